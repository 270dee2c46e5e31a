/** The remus-plan CLI, run in-process: outputs, the JSON schema of results, error codes and exit statuses. */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/plan.js';
import { fleetJsonSchema } from '../../src/measure/fleet-file.js';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const fixture = (name: string) => here(`../fixtures/${name}`);

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { out: (t) => (out += t), err: (t) => (err += t) });
  return { code, out, err };
}

const LINK = ['--bandwidth', '100Mbit/s', '--rtt', '25ms'];
const README_EXAMPLE = ['--dirty-rate', '12MiB/s@100ms', '--dirty-rate', '5MiB/s@1s', ...LINK];

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'remus-plan-test-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('outputs', () => {
  it('prints a table with a recommendation for the README example', async () => {
    const r = await run(...README_EXAMPLE);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/recommended epoch/);
    expect(r.out).toMatch(/power law α=0\.62/);
    expect(r.out).toMatch(/^link: 100 Mbit\/s/m);
    expect(r.err).toBe('');
  });

  it('--json has every documented field, finite numbers, and no NaN', async () => {
    const r = await run(...README_EXAMPLE, '--epoch', '10ms..1s:20', '--latency-budget', '400ms', '--json');
    expect(r.code).toBe(0);
    expect(r.out).not.toMatch(/NaN|Infinity/);
    const json = JSON.parse(r.out);
    const fields = [
      'epochMs',
      'effectiveEpochMs',
      'dirtyPages',
      'checkpointBytes',
      'wireBytes',
      'pauseMs',
      'transferMs',
      'bandwidthMbps',
      'peakBandwidthMbps',
      'latencyMeanMs',
      'latencyMaxMs',
      'rttCeilingMs',
      'channelsNeeded',
      'feasible',
      'reasons',
    ];
    expect(Object.keys(json).sort()).toEqual(['fleet', 'guests', 'link', 'policy']);
    const g = json.guests[0];
    expect(g.name).toBe('guest');
    expect(g.plans).toHaveLength(20);
    for (const plan of g.plans) {
      for (const f of fields) expect(plan, f).toHaveProperty(f);
      for (const f of fields.filter((x) => !['feasible', 'reasons', 'rttCeilingMs'].includes(x))) {
        expect(Number.isFinite(plan[f]), f).toBe(true);
      }
    }
    expect(g).toHaveProperty('recommended');
    expect(g.recommended.epochMs).toBeGreaterThan(0);
    expect(json.link.bandwidthMbps).toBe(100);
    expect(json.fleet.guests[0].fits).toBe(true);
  });

  it('--csv prints one row per epoch', async () => {
    const r = await run(...README_EXAMPLE, '--epoch', '10ms..1s:5', '--csv');
    const lines = r.out.trim().split('\n');
    expect(lines[0]).toMatch(/^guest,epochMs,effectiveEpochMs,/);
    expect(lines).toHaveLength(6);
    expect(lines.filter((l) => l.includes(',true,')).length).toBeGreaterThan(0);
  });

  it('--svg writes a chart', async () => {
    const file = join(dir, 'plan.svg');
    const r = await run(...README_EXAMPLE, '--svg', file);
    expect(r.code).toBe(0);
    const svg = await readFile(file, 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('guest');
  }, 30_000);

  it('plans a fleet file with files relative to it', async () => {
    const r = await run('--fleet', fixture('fleet/ok.json'), '--json');
    expect(r.code, r.err).toBe(0);
    const json = JSON.parse(r.out);
    expect(json.guests.map((g: { name: string }) => g.name)).toEqual(['a', 'b']);
    expect(json.guests[0].dirtyModel.windowsMs).toEqual([100, 1000, 10000]);
    expect(json.guests[1].compression.memory).toBe(0.25);
    expect(json.guests[0].plans.map((p: { epochMs: number }) => p.epochMs)).toEqual([50, 100]);
    expect(json.policy.latencyBudgetMs).toBe(200);
  });

  it('options override the fleet file’s link and policy', async () => {
    const r = await run(
      '--fleet',
      fixture('fleet/ok.json'),
      '--distance',
      '5000km',
      '--mode',
      'pipelined',
      '--json',
    );
    const json = JSON.parse(r.out);
    expect(json.link.rttMs).toBeCloseTo(49, 0);
    expect(json.link.rttSource).toBe('distance');
    expect(json.policy.mode).toBe('pipelined');
  });

  it('reads every measurement format through --input', async () => {
    for (const f of [
      'qemu/hmp.txt',
      'qemu/qemu-8.2-ms.ndjson',
      'trace/writes.csv',
      'trace/counts.csv',
      'trace/remus-wan-stats.jsonl',
      'measurements.json',
    ]) {
      const r = await run('--input', fixture(f), ...LINK, '--json');
      expect(r.code, `${f}: ${r.err}`).toBe(0);
    }
    const lv = await run('--input', fixture('libvirt/domstats.txt'), ...LINK, '--json');
    expect(JSON.parse(lv.out).guests.map((g: { name: string }) => g.name)).toEqual(['vm1', 'vm2']);
  });

  it("the daemons' stats, sender's and receiver's: what they measured is in the plan and its ack", async () => {
    const send = join(dir, 'send.jsonl');
    const recv = join(dir, 'recv.jsonl');
    const rows = Array.from({ length: 20 }, (_, i) => ({
      epoch: i + 1,
      full: i === 0,
      epochMs: 100,
      dirtyPages: 1000,
      rawBytes: 4096000,
      wireBytes: 400000,
      encodeMs: 5,
      sendMs: 65, // 60 ms of the 100 ms epoch beyond the encoding
      ackMs: 150,
    }));
    await writeFile(send, rows.map((r) => JSON.stringify(r)).join('\n'));
    const backup = rows.map((r) => ({ epoch: r.epoch, full: r.full, pages: 1000, decodeMs: 6, commitMs: 2 }));
    await writeFile(recv, backup.map((r) => JSON.stringify(r)).join('\n'));
    const args = [
      '--bandwidth',
      '1Gbit/s',
      '--rtt',
      '80ms',
      '--loss',
      '0.5%',
      '--cc',
      'bbr',
      '--channels',
      '2',
    ];
    args.push('--mode', 'pipelined', '--epoch', '100ms', '--json');
    const both = JSON.parse((await run('--input', send, '--input', recv, ...args)).out);
    const g = both.guests[0];
    expect(g.sending.share).toBeCloseTo(0.6, 9);
    expect(g.processing.perPageUs).toBeCloseTo(5, 9);
    expect(g.processing.backupPerPageUs).toBeCloseTo(8, 9);
    const p = g.plans[0];
    expect(p.processingMs).toBeCloseTo(13, 9);
    expect(p.queuedMs).toBeCloseTo(60 - p.transferMs, 2);
    expect(p.ackMs).toBeCloseTo(p.processingMs + p.transferMs + p.queuedMs + 80 + p.recoveryMs, 1);
    expect(g.warnings.join()).not.toMatch(/sendMs/);
    // the sender's file alone: the backup is taken as long as the primary
    const alone = JSON.parse((await run('--input', send, ...args)).out).guests[0];
    expect(alone.processing.backupPerPageUs).toBeUndefined();
    expect(alone.plans[0].processingMs).toBeCloseTo(10, 9);
  });

  it('--sample-pages measures the compression with zstd', async () => {
    const dump = join(dir, 'pages.bin');
    const text = Buffer.from('GET /index.html HTTP/1.1\r\nHost: example\r\n\r\n'.repeat(2000)).subarray(
      0,
      16 * 4096,
    );
    await writeFile(dump, Buffer.concat([Buffer.alloc(16 * 4096), text]));
    const r = await run(...README_EXAMPLE, '--sample-pages', dump, '--json');
    expect(r.code, r.err).toBe(0);
    const c = JSON.parse(r.out).guests[0].compression;
    expect(c.memory).toBeGreaterThan(0);
    expect(c.memory).toBeLessThan(0.05);
    expect(c.source).toMatch(/zstd -3 on 32 pages .*50\.0 % zero/);
  });

  it('schema prints the published fleet schema', async () => {
    const r = await run('schema');
    expect(JSON.parse(r.out)).toEqual(fleetJsonSchema());
    const committed = JSON.parse(await readFile(here('../../schema/fleet.schema.json'), 'utf8'));
    expect(committed).toEqual(fleetJsonSchema());
  });

  it('--help lists the options and the exit statuses', async () => {
    const r = await run('--help');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/--dirty-rate <rate@window>/);
    expect(r.out).toMatch(/Exit status/);
  });
});

describe('errors: stable codes and exit statuses', () => {
  it.each([
    [['--dirty-rate', '12MiB/s@100ms', '--bandwidth', 'fast', '--rtt', '25ms'], 2, 'RWAN_ERR_INVALID_UNIT'],
    [['--dirty-rate', '12MiB/s', ...LINK], 2, 'RWAN_ERR_INVALID_UNIT'],
    [['--dirty-rate', '12MiB/s@0ms', ...LINK], 2, 'RWAN_ERR_INVALID_VALUE'],
    [['--dirty-pages', '-5@100ms', ...LINK], 2, 'RWAN_ERR_INVALID_VALUE'],
    [['--dirty-rate', '1MiB/s@1s', ...LINK, '--loss', '150%'], 2, 'RWAN_ERR_INVALID_VALUE'],
    [['--dirty-rate', '1MiB/s@1s', ...LINK, '--headroom', '100%'], 2, 'RWAN_ERR_INVALID_VALUE'],
    [['--dirty-rate', '1MiB/s@1s', ...LINK, '--pause', '1ms'], 2, 'RWAN_ERR_INVALID_UNIT'],
    [['--dirty-rate', '1MiB/s@1s', ...LINK, '--percentile', '0'], 2, 'RWAN_ERR_INVALID_VALUE'],
    [['--dirty-rate', '1MiB/s@1s', ...LINK, '--distance', '100km'], 2, 'RWAN_ERR_USAGE'],
    [['--dirty-rate', '1MiB/s@1s', '--rtt', '25ms'], 3, 'RWAN_ERR_MISSING_FIELD'],
    [['--dirty-rate', '1MiB/s@1s', '--bandwidth', '1Gbps'], 3, 'RWAN_ERR_MISSING_FIELD'],
    [[...LINK], 2, 'RWAN_ERR_USAGE'],
    [['--input', 'missing-file.json', ...LINK], 4, 'RWAN_ERR_IO'],
    [['--fleet', 'missing-fleet.json'], 4, 'RWAN_ERR_IO'],
  ])('%j → exit %i, %s', async (argv, code, errCode) => {
    const r = await run(...(argv as string[]));
    expect(r.code).toBe(code);
    expect(r.err).toContain(errCode);
    expect(r.out).toBe('');
  });

  it.each([
    ['fleet/bad-types.json', 'RWAN_ERR_INVALID_INPUT', /guests\.0\.measurements\.0\.window/],
    ['fleet/no-guests.json', 'RWAN_ERR_MISSING_FIELD', /guests/],
    ['fleet/bad-unit.json', 'RWAN_ERR_INVALID_UNIT', /link\.bandwidth/],
    ['fleet/two-values.json', 'RWAN_ERR_INVALID_INPUT', /exactly one of rate, pages, samples/],
    ['fleet/truncated.json', 'RWAN_ERR_INVALID_INPUT', /not JSON/],
  ])('fleet %s → %s', async (file, errCode, message) => {
    const r = await run('--fleet', fixture(file));
    expect(r.err).toContain(errCode);
    expect(r.err).toMatch(message);
    expect(r.code).toBe(errCode === 'RWAN_ERR_INVALID_UNIT' ? 2 : 3);
  });

  it('unknown options and bad choices exit 2 with commander’s message', async () => {
    expect((await run('--bandwith', '1Gbps')).code).toBe(2);
    expect((await run(...README_EXAMPLE, '--mode', 'fast')).code).toBe(2);
  });

  it('--json errors are JSON on stderr', async () => {
    const r = await run('--dirty-rate', '1MiB/s@1s', '--bandwidth', 'lots', '--rtt', '1ms', '--json');
    expect(JSON.parse(r.err).error.code).toBe('RWAN_ERR_INVALID_UNIT');
  });

  it('--fail-on-infeasible exits 10 when a guest cannot be protected', async () => {
    const r = await run('--dirty-rate', '500MiB/s@1s', ...LINK, '--fail-on-infeasible');
    expect(r.code).toBe(10);
    expect(r.out).toMatch(/CANNOT PROTECT/);
    expect(r.err).toContain('RWAN_ERR_INFEASIBLE');
    expect((await run(...README_EXAMPLE, '--fail-on-infeasible')).code).toBe(0);
  });

  it('absurd but well-formed values plan without NaN', async () => {
    const r = await run('--dirty-rate', '1e30MiB/s@1ms', '--bandwidth', '1bit/s', '--rtt', '1h', '--json');
    expect(r.code).toBe(0);
    expect(r.out).not.toMatch(/NaN|Infinity/);
    expect(JSON.parse(r.out).guests[0].recommended).toBeNull();
  });

  it('measure qmp on a missing socket exits 5', async () => {
    const r = await run('measure', 'qmp', '--socket', join(dir, 'no.sock'), '--windows', '1s', '--quiet');
    expect(r.code).toBe(5);
    expect(r.err).toContain('RWAN_ERR_QMP');
  });
});
