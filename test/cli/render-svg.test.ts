import { describe, expect, it } from 'vitest';
import { buildSpec, DEFAULT_SVG_TITLE, MAX_LEGEND_GUESTS, renderSvg } from '../../src/cli/render-svg.js';
import type { EpochPlan, GuestResult, LinkResult, PlanResult } from '../../src/planner/types.js';

const EPOCHS_MS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];

/** A plan whose bandwidth falls and latency grows with the epoch (D(T) ∝ T^0.6), like a real guest. */
function plan(
  epochMs: number,
  scale: number,
  usableMbps: number,
  overrides: Partial<EpochPlan> = {},
): EpochPlan {
  const dirtyPages = Math.round(2000 * scale * (epochMs / 100) ** 0.6);
  const checkpointBytes = dirtyPages * 4104;
  const wireBytes = Math.round(checkpointBytes * 0.5);
  const bandwidthMbps = (wireBytes * 8) / (epochMs / 1000) / 1e6;
  const peakBandwidthMbps = bandwidthMbps * 1.6;
  const transferMs = (wireBytes * 8) / (usableMbps * 1e6) / 1e-3;
  const pauseMs = 0.5 + dirtyPages * 0.0002;
  const latencyMeanMs = epochMs / 2 + pauseMs + transferMs + 20;
  const feasible = peakBandwidthMbps <= usableMbps;
  return {
    epochMs,
    effectiveEpochMs: epochMs + pauseMs,
    dirtyPages,
    checkpointBytes,
    wireBytes,
    peakWireBytes: Math.round(wireBytes * 1.6),
    pauseMs,
    transferMs,
    queuedMs: 0,
    processingMs: 0,
    recoveryMs: 0,
    ackMs: transferMs + 20,
    copies: false,
    bandwidthMbps,
    peakBandwidthMbps,
    utilisation: bandwidthMbps / usableMbps,
    latencyMeanMs,
    latencyMaxMs: latencyMeanMs + epochMs / 2 + transferMs,
    rttCeilingMs: null,
    flowCeilingMbps: 350,
    channelsNeeded: 1,
    pauseFraction: pauseMs / (epochMs + pauseMs),
    feasible,
    reasons: feasible ? [] : ['peak bandwidth exceeds the usable link'],
    ...overrides,
  };
}

function guest(name: string, plans: EpochPlan[], recommendIndex: number | null = null): GuestResult {
  const feasible = plans.filter((p) => p.feasible);
  const recPlan = recommendIndex === null ? feasible[0] : plans[recommendIndex];
  return {
    name,
    pageSize: 4096,
    dirtyModel: { model: 'power-law', alpha: 0.6, fitError: 0.02, windowsMs: [100, 1000], notes: [] },
    compression: { memory: 0.5, disk: 1, source: 'measured' },
    processing: { perPageUs: 0, source: 'none' },
    plans,
    recommended:
      recPlan === undefined
        ? null
        : { epochMs: recPlan.epochMs, plan: recPlan, why: 'lowest-latency feasible' },
    ...(recPlan === undefined ? { cannotProtect: 'no feasible epoch' } : {}),
    warnings: [],
  };
}

function link(bandwidthMbps: number, usableMbps: number): LinkResult {
  return {
    bandwidthMbps,
    goodputMbps: bandwidthMbps * 0.95,
    rttMs: 40,
    rttSource: 'given',
    loss: 0,
    mssBytes: 1448,
    segmentOverheadBytes: 66,
    channels: 4,
    tcpWindowBytes: 4 * 1024 * 1024,
    cc: 'cubic',
    flowCeilingMbps: 350,
    flowLimit: 'window',
    channelsToFill: 3,
    usableMbps,
  };
}

function result(guests: GuestResult[], latencyBudgetMs: number | null, l = link(1000, 760)): PlanResult {
  const shares = guests.map((g) => ({
    name: g.name,
    epochMs: g.recommended?.epochMs ?? null,
    latencyMeanMs: g.recommended?.plan.latencyMeanMs ?? null,
    bandwidthMbps: g.recommended?.plan.bandwidthMbps ?? 0,
    peakBandwidthMbps: g.recommended?.plan.peakBandwidthMbps ?? 0,
    fits: g.recommended !== null,
  }));
  const sumBandwidthMbps = shares.reduce((s, g) => s + g.bandwidthMbps, 0);
  const sumPeakBandwidthMbps = shares.reduce((s, g) => s + g.peakBandwidthMbps, 0);
  return {
    guests,
    link: l,
    fleet: {
      guests: shares,
      sumBandwidthMbps,
      sumPeakBandwidthMbps,
      percentileBandwidthMbps: null,
      percentile: 99,
      usableMbps: l.usableMbps,
      feasible: sumPeakBandwidthMbps <= l.usableMbps,
      reasons: [],
    },
    policy: {
      mode: 'pipelined',
      latencyBudgetMs,
      budgetStat: 'mean',
      headroom: 0.2,
      pauseBaseMs: 0.5,
      pausePerPageUs: 0.2,
      framingBytes: 8,
      percentile: 99,
      inFlight: 2,
      copiesBelowBytes: 0,
      maxPauseFraction: 0.1,
    },
  };
}

function sampleGuests(): GuestResult[] {
  return [
    guest(
      'db-primary',
      EPOCHS_MS.map((e) => plan(e, 4, 760)),
    ),
    guest(
      'web-01',
      EPOCHS_MS.map((e) => plan(e, 0.6, 760)),
    ),
    guest(
      'batch & <jobs>',
      EPOCHS_MS.map((e) => plan(e, 40, 760, { feasible: false, reasons: ['too busy'] })),
    ),
  ];
}

/** `svg` contains `text`; a failure names the text, not the whole SVG. */
function expectText(svg: string, text: string): void {
  expect(svg.includes(text), `SVG should contain ${text}`).toBe(true);
}

/** Cheap well-formedness check: every opened element is closed, in order. */
function tagsBalance(svg: string): boolean {
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z][\w:-]*)[^>]*?(\/?)>/g)) {
    const [, closing, name, selfClosing] = m;
    if (name === undefined) return false;
    if (selfClosing === '/') continue;
    if (closing === '/') {
      if (stack.pop() !== name) return false;
    } else {
      stack.push(name);
    }
  }
  return stack.length === 0;
}

describe('renderSvg', () => {
  it('draws a standalone SVG with guests, axes, link rules and budget', async () => {
    const svg = await renderSvg(result(sampleGuests(), 150));
    expect(svg.startsWith('<svg')).toBe(true);
    expectText(svg, 'xmlns="http://www.w3.org/2000/svg"');
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(tagsBalance(svg)).toBe(true);
    expectText(svg, '>db-primary<');
    expectText(svg, '>web-01<');
    expectText(svg, '>batch &amp; &lt;jobs&gt;<');
    expect(svg.includes('batch & <jobs>')).toBe(false);
    expectText(svg, '>epoch (ms)<');
    expectText(svg, '>bandwidth (Mbit/s, log)<');
    expectText(svg, '>added client latency (ms, log)<');
    expectText(svg, '>usable link 760 Mbit/s<');
    expectText(svg, '>link 1,000 Mbit/s<');
    expectText(svg, '>budget 150 ms (mean)<');
    expectText(svg, DEFAULT_SVG_TITLE);
    expectText(svg, 'font-family="sans-serif"');
    expect(/href="https?:/.test(svg)).toBe(false);
  });

  it('leaves the budget out when there is none', async () => {
    const svg = await renderSvg(result(sampleGuests(), null));
    expectText(svg, '>usable link 760 Mbit/s<');
    expectText(svg, 'budget none');
    // No budget rule label ("budget 150 ms (mean)"); checked as a boolean so a failure does not print the SVG.
    expect(/>budget [^<]*</.test(svg)).toBe(false);
  });

  it('labels a budget on the max latency', async () => {
    const r = result(sampleGuests(), 400);
    r.policy.budgetStat = 'max';
    const svg = await renderSvg(r);
    expectText(svg, '>budget 400 ms (max)<');
  });

  it('draws a single guest with a single plan, and honours title and size', async () => {
    const one = guest('solo', [plan(100, 1, 760)]);
    const svg = await renderSvg(result([one], 80), { title: 'one plan', width: 300, height: 150 });
    expect(svg.startsWith('<svg')).toBe(true);
    expectText(svg, '>solo<');
    expectText(svg, 'one plan');
    expectText(svg, '>budget 80 ms (mean)<');
    expect(tagsBalance(svg)).toBe(true);
  });

  it('copes with zeros, non-finite values and no feasible plan', async () => {
    const plans = EPOCHS_MS.map((e, i) =>
      plan(e, 1000, 1, {
        feasible: false,
        bandwidthMbps: i === 0 ? 0 : 1e-4 * e,
        peakBandwidthMbps: i === 1 ? Number.POSITIVE_INFINITY : 1e-3 * e,
        latencyMaxMs: i === 2 ? Number.NaN : e * 3,
      }),
    );
    const r = result([guest('stuck', plans)], 0, link(100, 0));
    expect(r.guests[0]?.recommended).toBeNull();
    const svg = await renderSvg(r);
    expectText(svg, '>stuck<');
    expectText(svg, 'no feasible plan');
    expectText(svg, '>usable link 0 Mbit/s<');
    expect(svg.includes('NaN')).toBe(false);
    expect(svg.includes('Infinity')).toBe(false);
    expect(tagsBalance(svg)).toBe(true);
  });

  it('uses a log bandwidth axis only when values span more than two decades', () => {
    const yTitles = (r: PlanResult) => JSON.stringify(buildSpec(r)).match(/bandwidth \(Mbit\/s[^)]*\)/)?.[0];
    expect(yTitles(result(sampleGuests(), null))).toBe('bandwidth (Mbit/s, log)');
    const flat = guest(
      'flat',
      [100, 200].map((e) => plan(e, 1, 760, { bandwidthMbps: 300, peakBandwidthMbps: 400 })),
    );
    expect(yTitles(result([flat], null))).toBe('bandwidth (Mbit/s)');
  });

  it('draws no guests at all', async () => {
    const svg = await renderSvg(result([], 10));
    expect(svg.startsWith('<svg')).toBe(true);
    expectText(svg, 'no guests');
    expect(tagsBalance(svg)).toBe(true);
  });

  it('renders 100 guests × 100 plans with a capped legend', async () => {
    const epochs = Array.from({ length: 100 }, (_, i) => 10 ** (i / 33));
    const guests = Array.from({ length: 100 }, (_, g) =>
      guest(
        `guest-${String(g).padStart(3, '0')}`,
        epochs.map((e) => plan(e, 0.1 + g / 10, 760)),
      ),
    );
    const svg = await renderSvg(result(guests, 200));
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expectText(svg, '>guest-000<');
    expectText(svg, `>guest-${String(MAX_LEGEND_GUESTS - 1).padStart(3, '0')}<`);
    expect(svg.includes(`>guest-${String(MAX_LEGEND_GUESTS).padStart(3, '0')}<`)).toBe(false);
    expectText(svg, `first ${MAX_LEGEND_GUESTS} of 100 guests`);
  });
});
