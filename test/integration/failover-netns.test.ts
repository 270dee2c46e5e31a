/**
 * Failover across network namespaces (netns-lab.ts): BIRD as the upstream router, site A (ExaBGP,
 * remus-wan send, remus-failover run --role primary) and site B (ExaBGP, remus-wan receive,
 * remus-failover run --role backup), the witness on the router's side. Every part is the real
 * program, each in its namespace; the test only kills, cuts links, reads logs and asks BIRD.
 *
 * - site A's host dies (every process of A killed): the prefix moves from A to B at BIRD, reachable
 *   via B; the time from the receiver's "primary lost" and from the promoting decision to the route
 *   at BIRD is measured. A comes back: its sender is refused (PROMOTED), its controller is
 *   superseded and never announces.
 * - site A's replication dies (its sender killed; A's ExaBGP and controller live on): A withdraws
 *   first (the backup is silent and the witness cannot reach A), then B promotes; the two routes are
 *   never at BIRD at once.
 * - a partition between A and B with the witness still reaching A: B never announces, A keeps the
 *   route; healed, replication goes on.
 * - site A cut off from both B and the witness, its BGP session still up: A withdraws its route
 *   itself (self-fence) before B's dead time ends, then B promotes; never both at BIRD.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { haveBgpTools } from './bgp-lab.js';
import { assertFreshBuild, type Proc, Procs, readJsonl, WAN, waitFor } from './daemon-harness.js';
import { type BgpRoute, canMakeNamespaces, type NetnsLab, startNetnsLab } from './netns-lab.js';

const FAILOVER = join(import.meta.dirname, '..', '..', 'dist', 'src', 'cli', 'failover.js');
const PREFIX = '203.0.113.0/24';
const dir = mkdtempSync(join(tmpdir(), 'rwan-failover-netns-'));
const procs = new Procs(dir);
let lab: NetnsLab;
/** What the current test started (stopped after it, whether it passed or not). */
const started: Proc[] = [];

beforeAll(async () => {
  expect(haveBgpTools(), 'bird2 and exabgp are needed (tools/system-deps.sh)').toBe(true);
  expect(canMakeNamespaces(), 'network namespaces are needed (root and iproute2)').toBe(true);
  assertFreshBuild();
  lab = await startNetnsLab();
}, 60_000);
afterAll(async () => {
  await procs.killAll();
  await lab?.stop();
  rmSync(dir, { recursive: true, force: true });
});

interface Sites {
  exaA: Proc;
  exaB: Proc;
  sender: Proc;
  receiver: Proc;
  witness: Proc;
  ctlA: Proc;
  ctlB: Proc;
}

/** `node <args>` in namespace `ns`. */
const inNs = (name: string, ns: string, args: string[]) =>
  procs.start(name, ['netns', 'exec', ns, process.execPath, ...args], { command: 'ip' });

/** The JSON lines of a process's log with this `msg`. */
function records(p: Proc, msg: string): Array<Record<string, unknown>> {
  return p.logRecords().filter((r) => r.msg === msg);
}

/** The decision (logged once its tick is over) that promoted B, waited for. */
async function promotion(ctlB: Proc): Promise<Record<string, unknown>> {
  await waitFor('B’s promoting decision in its log', 5000, () => decisionsWith(ctlB, 'promote').length > 0);
  const all = decisionsWith(ctlB, 'promote');
  expect(all).toHaveLength(1);
  return all[0] as Record<string, unknown>;
}

/** Decisions whose actions include `kind`. */
function decisionsWith(p: Proc, kind: string): Array<Record<string, unknown>> {
  return records(p, 'decision').filter((r) =>
    (r.actions as Array<{ kind: string }>).some((a) => a.kind === kind),
  );
}

/**
 * Site A's sender (`<run>-sender<again>`: a restart logs apart); its metrics port is what the witness
 * probes: A, alive.
 */
function startSender(run: string, again = ''): Proc {
  const p = inNs(`${run}-sender${again}`, lab.site.a.ns, [
    WAN,
    ...['send', '--connect', `${lab.site.b.linkAddress}:7000`, '--image', join(dir, `${run}.img`)],
    ...['--insecure', '--epoch', '50ms', '--metrics', '0.0.0.0:9464'],
    ...['--stats', join(dir, `${run}-tx${again}.jsonl`), '--verify'],
  ]);
  started.push(p);
  return p;
}

/** A site's controller (`<run>-ctl-<site><again>`): A primary, B backup, each with its token file. */
function controller(run: string, site: 'a' | 'b', again = ''): Proc {
  const p = inNs(`${run}-ctl-${site}${again}`, lab.site[site].ns, [
    FAILOVER,
    ...['run', '--role', site === 'a' ? 'primary' : 'backup', '--site', site],
    ...['--daemon', `http://127.0.0.1:${site === 'a' ? 9464 : 9465}`],
    ...['--witness', `http://${lab.site[site].witness}:7900`],
    ...['--token-file', join(dir, `${run}-${site}.token`)],
    ...['--pipe', lab.site[site].pipeName, '--prefix', PREFIX, '--rise', '1'],
    ...['--interval', '100', '--fence-after', '300', '--timeout', '500', '--dead-time', '2000'],
  ]);
  started.push(p);
  return p;
}

/**
 * Both sites, replicating, A's prefix at BIRD. Timings: dead time 2 s, fence 300 ms, ticks 100 ms
 * (checked by the controllers: 600 + 300 + 100 + 500 + 250 = 1750 ms < 2000).
 */
async function startSites(run: string): Promise<Sites> {
  const { a, b } = lab.site;
  writeFileSync(join(dir, `${run}.img`), Buffer.alloc(256 * 4096, 5));
  const [exaA, exaB] = await Promise.all([lab.exabgp('a'), lab.exabgp('b')]);
  started.push(exaA, exaB);
  const receiver = inNs(`${run}-receiver`, b.ns, [
    WAN,
    ...['receive', '--listen', `${b.linkAddress}:7000`, '--store', join(dir, `${run}-store`), '--insecure'],
    ...['--dead-time', '2s', '--metrics', '127.0.0.1:9465'],
    ...['--stats', join(dir, `${run}-rx.jsonl`), '--verify'],
  ]);
  const sender = startSender(run);
  started.push(receiver);
  const witness = inNs(`${run}-witness`, lab.net, [
    FAILOVER,
    ...['witness', '--listen', '0.0.0.0:7900', '--primary', `${a.witnessSide}:9464`],
    ...['--token-file', join(dir, `${run}-witness.token`), '--probe-timeout', '300'],
  ]);
  started.push(witness);
  await waitFor(
    'the receiver and the sender replicating',
    20_000,
    () => records(receiver, 'sender connected').length > 0,
  );
  const ctlA = controller(run, 'a');
  const ctlB = controller(run, 'b');
  const report = () => started.map((p) => `── ${p.name}\n${p.tail(8)}`).join('\n');
  await waitFor(
    'A’s prefix at BIRD, B standing by with the primary alive',
    20_000,
    () => {
      const r = lab.routes(PREFIX);
      const last = records(ctlB, 'decision').at(-1);
      return (
        r.length === 1 &&
        r[0]?.protocol === 'sitea' &&
        last?.authority === 'standby' &&
        last.daemon === 'receiver: primary alive'
      );
    },
    report,
  );
  return { exaA, exaB, sender, receiver, witness, ctlA, ctlB };
}

afterEach(async () => {
  await Promise.all(started.splice(0).map((p) => p.kill9()));
  lab.cut(['ab', 'aw'], false);
  await waitFor('no route left at BIRD', 5000, () => lab.routes(PREFIX).length === 0);
});

/** Polls BIRD every 2 ms until `cond` holds on its routes; the wall-clock time it held first. */
async function untilRoutes(
  what: string,
  ms: number,
  cond: (r: BgpRoute[]) => boolean,
  seen?: (r: BgpRoute[]) => void,
): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    const r = lab.routes(PREFIX);
    seen?.(r);
    if (cond(r)) return Date.now();
    if (performance.now() - t0 > ms)
      throw new Error(`timed out after ${ms} ms waiting for ${what}: ${JSON.stringify(r)}`);
    await sleep(2);
  }
}

/** A's route leaves BIRD, then B's arrives: when each happened; throws if BIRD ever holds both. */
async function handover(): Promise<{ goneAt: number; atBird: number }> {
  const neverBoth = (r: BgpRoute[]) => {
    if (r.length > 1) throw new Error(`both sites' routes at BIRD: ${JSON.stringify(r)}`);
  };
  const goneAt = await untilRoutes('A’s route withdrawn', 10_000, (r) => r.length === 0, neverBoth);
  const atBird = await untilRoutes(
    'the prefix from B',
    15_000,
    (r) => r.length === 1 && r[0]?.protocol === 'siteb',
    neverBoth,
  );
  return { goneAt, atBird };
}

describe('remus-failover across network namespaces: BIRD, sites A and B with ExaBGP, the witness', () => {
  it('site A’s host dies: the prefix moves from A to B at BIRD, reachable via B, promoted once', async () => {
    const s = await startSites('host');
    const killedAt = Date.now();
    await Promise.all([s.exaA, s.sender, s.ctlA].map((p) => p.kill9()));
    const atBird = await untilRoutes(
      'the prefix from B',
      15_000,
      (r) => r.length === 1 && r[0]?.protocol === 'siteb',
    );
    const [route] = lab.routes(PREFIX);
    expect(route).toEqual({ protocol: 'siteb', best: true, via: lab.site.b.address });
    // the receiver declared the primary lost; the backup's first tick that saw it promoted
    const lost = records(s.receiver, 'primary lost')[0];
    expect(lost, s.receiver.tail()).toBeDefined();
    const p = await promotion(s.ctlB);
    expect(p.token).toBe(1);
    expect((p.reasons as string[]).join(' ')).toMatch(
      /witness cannot reach it either.*ended the stream at epoch \d+/,
    );
    const decidedAt = Date.parse(p.time as string) - (p.ms as number);
    const lostAt = Date.parse(lost?.time as string);
    console.log(
      `netns failover: A killed → "primary lost" ${lostAt - killedAt} ms (dead time 2000) → promoting tick ` +
        `${(decidedAt - lostAt).toFixed(0)} ms → route from B at BIRD ${(atBird - decidedAt).toFixed(0)} ms ` +
        `(from "primary lost": ${atBird - lostAt} ms); the tick's steps: ${JSON.stringify(p.steps)}`,
    );
    expect(atBird).toBeGreaterThanOrEqual(decidedAt);
    // the receiver ended the stream where the replica is; B's token file and the witness agree
    const ended = records(s.receiver, 'promoted: the stream ended')[0];
    expect(ended).toMatchObject({ token: 1 });
    expect((p.reasons as string[]).join(' ')).toContain(`ended the stream at epoch ${ended?.epoch}`);
    expect(readFileSync(join(dir, 'host-b.token'), 'utf8')).toBe('1\n');
    expect(readFileSync(join(dir, 'host-witness.token'), 'utf8')).toBe('1\n');
    await sleep(500);
    expect(decisionsWith(s.ctlB, 'promote')).toHaveLength(1);

    // site A comes back (its ExaBGP, sender and controller restarted): the receiver refuses the old
    // primary's sender (it stops), and A's controller, starting fenced, learns token 1 from the
    // witness and never announces
    const exaA = await lab.exabgp('a');
    started.push(exaA);
    const sender = startSender('host', '-again');
    const ctlA = controller('host', 'a', '-again');
    expect(await sender.exited).toMatchObject({ code: 8 });
    expect(sender.log()).toMatch(/the backup was promoted \(fencing token 1\)/);
    await waitFor('A superseded', 10_000, () => records(ctlA, 'decision').at(-1)?.authority === 'superseded');
    const t0 = performance.now();
    while (performance.now() - t0 < 1000) {
      expect(lab.routes(PREFIX)).toEqual([{ protocol: 'siteb', best: true, via: lab.site.b.address }]);
      await sleep(20);
    }
    expect(decisionsWith(ctlA, 'announce')).toEqual([]);
    expect(records(ctlA, 'decision')[0]?.authority).not.toBe('active');
  }, 120_000);

  it('site A’s replication dies: A withdraws first, then B announces; never both at BIRD', async () => {
    const s = await startSites('repl');
    const killedAt = Date.now();
    await s.sender.kill9();
    const { goneAt, atBird } = await handover();
    const fenced = decisionsWith(s.ctlA, 'withdraw').at(-1);
    expect(((fenced?.reasons ?? []) as string[]).join(' ')).toMatch(
      /witness has not vouched for this site \(it cannot reach it\)/,
    );
    await promotion(s.ctlB);
    console.log(
      `netns, A's sender killed: A withdrew after ${goneAt - killedAt} ms (fence 300), B's route at BIRD after ${atBird - killedAt} ms (dead time 2000)`,
    );
    // A learns the promotion from the witness and is superseded for good
    await waitFor('A superseded', 5000, () => records(s.ctlA, 'decision').at(-1)?.authority === 'superseded');
  }, 120_000);

  it('a partition between A and B, the witness still reaching A: B never announces, A keeps the route', async () => {
    const s = await startSites('part');
    lab.cut(['ab'], true);
    const t0 = performance.now();
    while (performance.now() - t0 < 4000) {
      const r = lab.routes(PREFIX);
      expect(r).toEqual([{ protocol: 'sitea', best: true, via: lab.site.a.address }]);
      await sleep(50);
    }
    expect(records(s.receiver, 'primary lost')).toHaveLength(1);
    expect(decisionsWith(s.ctlB, 'promote')).toEqual([]);
    expect(decisionsWith(s.ctlB, 'announce')).toEqual([]);
    expect(
      records(s.ctlB, 'decision')
        .flatMap((d) => d.reasons as string[])
        .join('\n'),
    ).toMatch(/witness still reaches it: a partition/);
    const lastA = records(s.ctlA, 'decision').at(-1);
    expect(lastA).toMatchObject({ authority: 'active', phase: 'UP' });
    expect(lastA?.daemon).not.toBe('sender: replicating'); // it hears the backup no more
    // healed: replication resumes, B hears the primary again
    lab.cut(['ab'], false);
    await waitFor(
      'B hears the primary again',
      20_000,
      () => records(s.ctlB, 'decision').at(-1)?.daemon === 'receiver: primary alive',
    );
    expect(lab.routes(PREFIX)).toEqual([{ protocol: 'sitea', best: true, via: lab.site.a.address }]);
  }, 120_000);

  it('site A cut off from B and from the witness, its BGP session up: A withdraws itself before B announces', async () => {
    const s = await startSites('iso');
    const cutAt = Date.now();
    lab.cut(['ab', 'aw'], true);
    const { goneAt, atBird } = await handover();
    // A's session with BIRD never dropped: A's own decision took its route away
    expect(lab.birdc('show', 'protocols', 'sitea')).toMatch(/Established/);
    const fenced = decisionsWith(s.ctlA, 'withdraw').at(-1);
    expect(fenced).toMatchObject({ authority: 'fenced' });
    expect(((fenced?.reasons ?? []) as string[]).join(' ')).toMatch(
      /the witness has not vouched for this site \(no answer\)/,
    );
    await promotion(s.ctlB);
    console.log(
      `netns, A isolated from B and the witness: A withdrew after ${goneAt - cutAt} ms ` +
        `(silence 600 + fence 300 + tick), B's route at BIRD after ${atBird - cutAt} ms (dead time 2000)`,
    );
  }, 120_000);
});

describe('over a WAN (tools/wanlab between A and B: 20 ms each way, 100 Mbit/s, 0.1 % loss)', () => {
  beforeAll(async () => {
    await lab.stop();
    lab = await startNetnsLab({ wan: { oneWayMs: 20, rate: '100mbit', loss: '0.1%' } });
  }, 60_000);

  it('A cut off longer than the dead time, the witness agreeing: failover once, the prefix at BIRD from B, the replica at the last acknowledged epoch', async () => {
    const s = await startSites('wan');
    await sleep(1000); // epochs flowing over the WAN
    const cutAt = Date.now();
    lab.cut(['ab', 'aw'], true);
    const { goneAt, atBird } = await handover();
    const promote = await promotion(s.ctlB);
    expect(promote.token).toBe(1);
    const ended = records(s.receiver, 'promoted: the stream ended')[0] as { epoch: number };
    // every epoch the primary saw acknowledged is in the replica, byte for byte
    const tx = readJsonl<{ epoch: number; digest: string }>(join(dir, 'wan-tx.jsonl'));
    const rx = readJsonl<{ epoch: number; replicaDigest: string }>(join(dir, 'wan-rx.jsonl'));
    const lastAcked = tx.at(-1) as { epoch: number; digest: string };
    expect(ended.epoch).toBeGreaterThanOrEqual(lastAcked.epoch);
    expect(rx.map((r) => r.epoch)).toEqual(Array.from({ length: rx.length }, (_, i) => i + 1));
    expect(rx.find((r) => r.epoch === lastAcked.epoch)?.replicaDigest).toBe(lastAcked.digest);
    console.log(
      `over a 40 ms round trip: A withdrew ${goneAt - cutAt} ms, B's route at BIRD ${atBird - cutAt} ms after the cut; ` +
        `${tx.length} epochs acknowledged, the replica at epoch ${ended.epoch}`,
    );
    await sleep(500);
    expect(decisionsWith(s.ctlB, 'promote')).toHaveLength(1);
  }, 120_000);
});
