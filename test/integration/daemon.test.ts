/**
 * The daemon pair as it ships (dist/), as real processes on loopback with mutual TLS: a workload writer
 * plays a seeded workload onto an image and logs its dirty pages, `remus-wan send` replicates it
 * (dirty-log mode, the writer paused around each capture, `--verify`) and `remus-wan receive` keeps the
 * replica. With `--verify` each sender stats line has the image digest at that epoch's capture and each
 * receiver line the replica's digest after committing it, so equal digests per epoch prove the replica
 * byte-identical to the primary at every epoch.
 *
 *   1. end to end: 200 epochs of 20 ms, every one identical at the backup, one full copy
 *   2. kill -9 of the receiver at random moments, restarted on its store: consistent, no full copy,
 *      the sender reconnects by itself
 *   3. kill -9 of the sender: the backup keeps its last epoch, says 'lost' only after the dead time,
 *      and runs the hook once
 *   4. the link cut and restored (a relay) within the dead time: no loss declared, no full copy, no
 *      epoch missing
 *
 * Random moments come from a seed printed on failure; DAEMON_TEST_SEED=N replays a run. The daemons'
 * logs (info level) are in files whose last lines are printed when a test fails; DAEMON_TEST_KEEP=1
 * keeps the temporary directory. Run `npm run build` first (the test refuses a stale dist/).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { digestFile } from '../../src/replication/image-digest.js';
import { getMetric } from './bad-peers-kit.js';
import {
  assertFreshBuild,
  freePorts,
  type Proc,
  Procs,
  type ReceiverStatus,
  Relay,
  type RxLine,
  readJsonl,
  type SenderStatus,
  seededRandom,
  status,
  type TxLine,
  WAN,
  WRITER,
  waitFor,
} from './daemon-harness.js';

const SEED = Number(process.env.DAEMON_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));
const PAGES = 2048;
const WRITER_RATE = 3000; // pages/s: about 60 dirty pages per 20 ms epoch
const EPOCH = '20ms';

let root: string;
let pki: string;
let dir: string;
let procs: Procs;
let relay: Relay | undefined;
let testNo = 0;

beforeAll(async () => {
  assertFreshBuild();
  root = mkdtempSync(join(tmpdir(), 'remus-daemon-'));
  pki = join(root, 'pki');
  const certs = new Procs(root).start('certs', [
    WAN,
    'certs',
    '--out',
    pki,
    '--host',
    'primary,127.0.0.1',
    '--host',
    'backup,127.0.0.1',
  ]);
  const exit = await certs.exited;
  if (exit.code !== 0) throw new Error(`remus-wan certs failed (${JSON.stringify(exit)}):\n${certs.log()}`);
});

afterAll(() => {
  if (!root) return;
  if (process.env.DAEMON_TEST_KEEP) console.error(`daemon test files kept in ${root}`);
  else rmSync(root, { recursive: true, force: true });
});

beforeEach((ctx) => {
  dir = mkdtempSync(join(root, `t${++testNo}-`));
  procs = new Procs(dir);
  relay = undefined;
  ctx.onTestFailed(() => {
    console.error(
      `\n[${ctx.task.name}] seed ${SEED} (DAEMON_TEST_SEED=${SEED} replays it), files in ${dir}\n${procs.report()}\n`,
    );
  });
});

afterEach(async () => {
  await relay?.close();
  await procs.killAll();
});

// ---------------------------------------------------------------------------------------------------
// starting the processes

function tls(self: 'primary' | 'backup', peer: 'primary' | 'backup'): string[] {
  return [
    '--tls-ca',
    join(pki, 'ca.pem'),
    '--tls-cert',
    join(pki, `${self}.pem`),
    '--tls-key',
    join(pki, `${self}.key`),
    '--peer-name',
    peer,
  ];
}

interface Writer {
  proc: Proc;
  pid: number;
  image: string;
  dirtyLog: string;
}

/** The workload writer on `image` (a file in the test directory by default, or a block device). */
async function startWriter(
  seed: number,
  image = join(dir, 'primary.img'),
  io: string[] = [],
): Promise<Writer> {
  const dirtyLog = join(dir, 'primary.dlog');
  const proc = procs.start('writer', [
    WRITER,
    ...io,
    '--image',
    image,
    '--pages',
    String(PAGES),
    '--seed',
    String(seed),
    '--dirty-log',
    dirtyLog,
    '--rate',
    String(WRITER_RATE),
  ]);
  const m = await proc.waitForLine(/^ready (\d+)$/m, 15_000);
  return { proc, pid: Number(m[1]), image, dirtyLog };
}

interface ReceiverSpec {
  port: number;
  metricsPort: number;
  store: string;
  deadTime: string;
  /** --checkpoint (default: the daemon's) */
  checkpoint?: string;
  hookFile?: string;
}

/** Start (or restart) the receiver; resolves once its /status answers (it listens by then). */
async function startReceiver(spec: ReceiverSpec, name: string, stats: string): Promise<Proc> {
  const hook = spec.hookFile
    ? ['--on-primary-lost', `echo "$REMUS_WAN_EVENT $REMUS_WAN_LAST_EPOCH" >> '${spec.hookFile}'`]
    : [];
  const proc = procs.start(name, [
    WAN,
    'receive',
    '--listen',
    `127.0.0.1:${spec.port}`,
    '--store',
    spec.store,
    ...tls('backup', 'primary'),
    '--metrics',
    `127.0.0.1:${spec.metricsPort}`,
    '--stats',
    stats,
    '--verify',
    '--dead-time',
    spec.deadTime,
    ...(spec.checkpoint === undefined ? [] : ['--checkpoint', spec.checkpoint]),
    '--log-level',
    'info',
    ...hook,
  ]);
  await waitFor(
    `${name} to answer on /status`,
    15_000,
    async () => {
      if (!proc.alive) throw new Error(`${name} exited ${JSON.stringify(proc.exitStatus)}:\n${proc.tail()}`);
      return (await status(spec.metricsPort)) !== undefined;
    },
    () => proc.tail(),
  );
  return proc;
}

interface SenderSpec {
  port: number;
  metricsPort: number;
  stats: string;
  writer: Writer;
  maxEpochs?: number;
}

function startSender(spec: SenderSpec): Proc {
  return procs.start('sender', [
    WAN,
    'send',
    '--connect',
    `127.0.0.1:${spec.port}`,
    '--image',
    spec.writer.image,
    '--dirty-log',
    spec.writer.dirtyLog,
    '--pause-pid',
    String(spec.writer.pid),
    ...tls('primary', 'backup'),
    '--epoch',
    EPOCH,
    '--stats',
    spec.stats,
    '--metrics',
    `127.0.0.1:${spec.metricsPort}`,
    '--verify',
    '--log-level',
    'info',
    ...(spec.maxEpochs === undefined ? [] : ['--max-epochs', String(spec.maxEpochs)]),
  ]);
}

async function rxStatus(port: number): Promise<ReceiverStatus | undefined> {
  return status<ReceiverStatus>(port);
}

async function txStatus(port: number): Promise<SenderStatus | undefined> {
  return status<SenderStatus>(port);
}

/** Waits until the receiver has committed `epoch` (the sender must keep running meanwhile). */
async function waitCommitted(
  metricsPort: number,
  epoch: number,
  timeoutMs: number,
  sender: Proc,
  what: string,
): Promise<ReceiverStatus> {
  let last: ReceiverStatus | undefined;
  await waitFor(
    `${what}: the receiver to commit epoch ${epoch}`,
    timeoutMs,
    async () => {
      if (!sender.alive) throw new Error(`the sender exited ${JSON.stringify(sender.exitStatus)} (${what})`);
      last = await rxStatus(metricsPort);
      return (last?.lastCommittedEpoch ?? 0) >= epoch;
    },
    () => `receiver status ${JSON.stringify(last)}`,
  );
  return last as ReceiverStatus;
}

/** Resolves with `p`, or rejects after `ms` saying what did not happen. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------------
// checking the stats files

const range = (from: number, to: number): number[] =>
  Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);

/** Epochs whose receiver digest is missing or differs from the sender's at that epoch's capture. */
function digestMismatches(tx: TxLine[], rx: RxLine[]): string[] {
  const sent = new Map(tx.map((t) => [t.epoch, t.digest]));
  const bad: string[] = [];
  for (const r of rx) {
    const d = sent.get(r.epoch);
    if (d === undefined) continue; // not acknowledged before the sender stopped: checked by the caller
    if (r.replicaDigest === undefined || r.replicaDigest !== d)
      bad.push(`epoch ${r.epoch}: replica ${r.replicaDigest}, primary ${d}`);
  }
  return bad;
}

function fullEpochs(lines: Array<{ epoch: number; full: boolean }>): number[] {
  return lines.filter((l) => l.full).map((l) => l.epoch);
}

/** The lines of the hook's output file (none when it never ran). */
function hookLines(path: string): string[] {
  try {
    return readFileSync(path, 'utf8').split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

// ---------------------------------------------------------------------------------------------------

describe('remus-wan send and receive as processes on loopback (TLS, dirty log, paused writer)', () => {
  it('end to end: 200 epochs of 20 ms, each byte-identical at the backup, one full copy', async () => {
    const writer = await startWriter(SEED % 1000);
    const [port, metricsPort, txMetrics] = (await freePorts(3)) as [number, number, number];
    const spec: ReceiverSpec = {
      port,
      metricsPort,
      store: join(dir, 'store'),
      deadTime: '3s',
    };
    const rxStats = join(dir, 'rx.jsonl');
    const txStats = join(dir, 'tx.jsonl');
    const receiver = await startReceiver(spec, 'receiver', rxStats);
    const sender = startSender({
      port: spec.port,
      metricsPort: txMetrics,
      stats: txStats,
      writer,
      maxEpochs: 200,
    });
    const exit = await within(sender.exited, 70_000, 'the sender to finish 200 acknowledged epochs');
    expect(exit, 'the sender stops by itself after --max-epochs, exit status 0').toEqual({
      code: 0,
      signal: null,
    });

    const st = await rxStatus(spec.metricsPort);
    expect(st?.lastCommittedEpoch).toBe(200);
    expect(st?.store.committedEpoch).toBe(200);
    expect(st?.counters.digestFailures).toBe(0);
    // write-back: the replica file lags behind for the pages the cache keeps (no checkpoint yet) …
    const retained = await getMetric(
      `http://127.0.0.1:${spec.metricsPort}`,
      'remus_wan_replica_retained_pages',
    );
    expect(retained).toBeGreaterThan(0);
    expect(await receiver.stop()).toEqual({ code: 0, signal: null });

    const tx = readJsonl<TxLine>(txStats);
    const rx = readJsonl<RxLine>(rxStats);
    expect(
      tx.map((t) => t.epoch),
      'acknowledged epochs',
    ).toEqual(range(1, 200));
    expect(
      rx.map((r) => r.epoch),
      'committed epochs: consecutive, none twice',
    ).toEqual(range(1, 200));
    expect(
      tx.every((t) => typeof t.digest === 'string'),
      'every sender line has a digest',
    ).toBe(true);
    expect(digestMismatches(tx, rx)).toEqual([]);
    expect(fullEpochs(rx), 'full copies committed').toEqual([1]);
    expect(fullEpochs(tx), 'full copies sent').toEqual([1]);
    // … and the replica left behind by a clean stop is the primary at the last epoch
    expect(await digestFile(join(spec.store, 'replica.img'))).toBe(tx[199]?.digest);
  }, 90_000);

  // a loop device needs root (losetup); CI runs as root
  it.skipIf(process.getuid?.() !== 0)(
    'a block device as the image: every epoch byte-identical at the backup',
    async () => {
      const backing = join(dir, 'backing.img');
      writeFileSync(backing, Buffer.alloc(PAGES * 4096));
      const dev = execFileSync('losetup', ['--find', '--show', backing], { encoding: 'latin1' }).trim();
      try {
        // pwrite: the writer cannot size a device, which a mapping of it needs
        const writer = await startWriter((SEED + 1) % 1000, dev, ['--io', 'pwrite']);
        const [port, metricsPort, txMetrics] = (await freePorts(3)) as [number, number, number];
        const spec: ReceiverSpec = { port, metricsPort, store: join(dir, 'store'), deadTime: '3s' };
        const rxStats = join(dir, 'rx.jsonl');
        const txStats = join(dir, 'tx.jsonl');
        const receiver = await startReceiver(spec, 'receiver', rxStats);
        const sender = startSender({ port, metricsPort: txMetrics, stats: txStats, writer, maxEpochs: 60 });
        expect(await within(sender.exited, 60_000, 'the sender to finish 60 epochs')).toEqual({
          code: 0,
          signal: null,
        });
        expect(await receiver.stop()).toEqual({ code: 0, signal: null });
        await writer.proc.stop();
        const tx = readJsonl<TxLine>(txStats);
        const rx = readJsonl<RxLine>(rxStats);
        expect(tx.map((t) => t.epoch)).toEqual(range(1, 60));
        expect(digestMismatches(tx, rx)).toEqual([]);
        expect(fullEpochs(rx)).toEqual([1]);
        expect(statSync(join(spec.store, 'replica.img')).size).toBe(PAGES * 4096);
        expect(await digestFile(join(spec.store, 'replica.img'))).toBe(tx[59]?.digest);
      } finally {
        await procs.killAll();
        execFileSync('losetup', ['-d', dev]);
      }
    },
    90_000,
  );

  it('kill -9 of the receiver at random moments: restarted on its store, it resumes without a full copy', async () => {
    const rnd = seededRandom(SEED ^ 0x5eed02);
    const writer = await startWriter((SEED + 2) % 1000);
    const [port, metricsPort, txMetrics] = (await freePorts(3)) as [number, number, number];
    const spec: ReceiverSpec = {
      port,
      metricsPort,
      store: join(dir, 'store'),
      deadTime: '3s',
      // checkpoints every few epochs: a restart restores the page cache from the last one and
      // replays the journal's compressed epochs since
      checkpoint: '256KiB',
    };
    const txStats = join(dir, 'tx.jsonl');
    const rxStats = (n: number) => join(dir, `rx-${n}.jsonl`);
    let receiver = await startReceiver(spec, 'receiver-1', rxStats(1));
    const sender = startSender({ port: spec.port, metricsPort: txMetrics, stats: txStats, writer });
    await waitCommitted(spec.metricsPort, 5, 30_000, sender, 'first epochs');

    const KILLS = 4;
    /** The store's committed epoch as each restarted receiver found it (index k: after kill k). */
    const reopened: number[] = [];
    const recoveries: Array<{ sidecarEpoch: number | null; replayed: number }> = [];
    const events: string[] = [];
    for (let k = 1; k <= KILLS; k++) {
      const delay = Math.round(150 + rnd() * 1200);
      await sleep(delay);
      expect(sender.alive, `the sender is running before kill ${k}`).toBe(true);
      const before = await rxStatus(spec.metricsPort);
      await receiver.kill9();
      const down = Math.round(rnd() * 400);
      events.push(`kill ${k} after ${delay} ms (committed ≥ ${before?.lastCommittedEpoch}), down ${down} ms`);
      await sleep(down);
      receiver = await startReceiver(spec, `receiver-${k + 1}`, rxStats(k + 1));
      await receiver.waitForLine(/"msg":"replica store opened"/, 5000);
      const opened = receiver.logRecords().find((r) => r.msg === 'replica store opened');
      recoveries.push({
        sidecarEpoch: opened?.sidecarEpoch as number | null,
        replayed: opened?.replayed as number,
      });
      const committed = opened?.committedEpoch as number;
      expect(typeof committed, `receiver-${k + 1} recovered a store with epochs`).toBe('number');
      reopened.push(committed);
      expect(committed, `kill ${k}: the store keeps what was committed`).toBeGreaterThanOrEqual(
        before?.lastCommittedEpoch ?? 0,
      );
      const after = await waitCommitted(
        spec.metricsPort,
        committed + 3,
        20_000,
        sender,
        `after restart ${k} (${events.join('; ')})`,
      );
      expect(after.counters.resumes, `receiver-${k + 1} resumed the same session`).toBeGreaterThanOrEqual(1);
      expect(after.counters.digestFailures).toBe(0);
    }
    const endAt = (reopened[KILLS - 1] ?? 0) + 15;
    await waitCommitted(spec.metricsPort, endAt, 20_000, sender, 'after the last restart');
    expect(
      recoveries.some((r) => r.sidecarEpoch !== null && r.replayed > 0),
      `a restart from a checkpoint with journaled epochs after it (${JSON.stringify(recoveries)})`,
    ).toBe(true);
    const txSt = await txStatus(txMetrics);
    expect(txSt?.counters.reconnects, 'the sender reconnected by itself').toBeGreaterThanOrEqual(KILLS);
    expect(txSt?.counters.fullEpochs, 'full copies the sender made').toBe(1);
    expect(sender.alive, 'the sender never stopped').toBe(true);
    expect(await sender.stop()).toEqual({ code: 0, signal: null });
    expect(await receiver.stop()).toEqual({ code: 0, signal: null });

    const tx = readJsonl<TxLine>(txStats);
    const last = tx.at(-1)?.epoch ?? 0;
    expect(
      tx.map((t) => t.epoch),
      'acknowledged epochs',
    ).toEqual(range(1, last));
    expect(fullEpochs(tx)).toEqual([1]);
    const files = range(1, KILLS + 1).map((n) => readJsonl<RxLine>(rxStats(n), { tornTail: n <= KILLS }));
    const all = files.flat();
    expect(fullEpochs(all), 'full copies committed, over every incarnation').toEqual([1]);
    expect(digestMismatches(tx, all)).toEqual([]);
    expect(all.filter((r) => r.epoch > last).length, 'committed, not acknowledged at the end').toBeLessThan(
      5,
    );
    files.forEach((lines, i) => {
      const epochs = lines.map((l) => l.epoch);
      const first = i === 0 ? 1 : (reopened[i - 1] as number) + 1;
      expect(epochs.length, `receiver-${i + 1} committed epochs`).toBeGreaterThan(0);
      expect(epochs, `receiver-${i + 1}: epochs consecutive from ${first}`).toEqual(
        range(first, first + epochs.length - 1),
      );
      const next = reopened[i];
      if (next !== undefined && epochs.length > 0)
        expect(next, `receiver-${i + 1}'s epochs survive its kill`).toBeGreaterThanOrEqual(
          epochs.at(-1) as number,
        );
    });
  }, 100_000);

  it('kill -9 of the sender: the backup keeps its epoch, says lost only after the dead time, hook once', async () => {
    const DEAD_MS = 2000;
    const writer = await startWriter((SEED + 3) % 1000);
    const hookFile = join(dir, 'hook.out');
    const [port, metricsPort, txMetrics] = (await freePorts(3)) as [number, number, number];
    const spec: ReceiverSpec = {
      port,
      metricsPort,
      store: join(dir, 'store'),
      deadTime: `${DEAD_MS}ms`,
      hookFile,
    };
    const rxStats = join(dir, 'rx.jsonl');
    const txStats = join(dir, 'tx.jsonl');
    const receiver = await startReceiver(spec, 'receiver', rxStats);
    const sender = startSender({ port: spec.port, metricsPort: txMetrics, stats: txStats, writer });
    await waitCommitted(spec.metricsPort, 15, 30_000, sender, 'before the kill');
    await sleep(Math.round(seededRandom(SEED ^ 0x5eed03)() * 500));

    const atKill = await rxStatus(spec.metricsPort);
    expect(atKill?.primary).toBe('alive');
    const t0 = performance.now();
    await sender.kill9();
    const samples: Array<{ ms: number; primary: string; epoch: number | null }> = [];
    const sample = async () => {
      const s = await rxStatus(spec.metricsPort);
      if (!s) throw new Error('the receiver stopped answering');
      samples.push({
        ms: Math.round(performance.now() - t0),
        primary: s.primary,
        epoch: s.lastCommittedEpoch,
      });
      return s;
    };
    while (performance.now() - t0 < DEAD_MS / 2 - 100) {
      await sample();
      await sleep(100);
    }
    await sleep(Math.max(0, t0 + DEAD_MS / 2 - performance.now()));
    const half = await sample();
    expect(half.primary, `at half the dead time (${samples.at(-1)?.ms} ms after the kill)`).not.toBe('lost');
    expect(['alive', 'suspect']).toContain(half.primary);
    const kept = half.lastCommittedEpoch as number;
    expect(kept).toBeGreaterThanOrEqual(atKill?.lastCommittedEpoch ?? 0);
    await waitFor(
      "the receiver's status to say the primary is lost",
      DEAD_MS + 3000,
      async () => (await sample()).primary === 'lost',
      () => JSON.stringify(samples),
      100,
    );
    const lostAt = samples.find((s) => s.primary === 'lost')?.ms as number;
    expect(lostAt, `lost ${lostAt} ms after the kill: not before the dead time`).toBeGreaterThanOrEqual(
      DEAD_MS - 250,
    );
    expect(
      samples
        .filter((s) => s.ms >= DEAD_MS / 2 - 50 && s.epoch !== kept)
        .map((s) => `${s.ms} ms: ${s.epoch}`),
      'the last committed epoch stays put from half the dead time on',
    ).toEqual([]);

    await waitFor('the hook to run', 5000, () => hookLines(hookFile).length > 0);
    await sleep(1500); // a second run would show by now
    expect(hookLines(hookFile), 'the hook ran once, for primary-lost at the kept epoch').toEqual([
      `primary-lost ${kept}`,
    ]);
    // what an operator sees: `remus-wan status --json`
    const cli = procs.start('status', [
      WAN,
      'status',
      '--url',
      `http://127.0.0.1:${spec.metricsPort}`,
      '--json',
    ]);
    expect((await within(cli.exited, 15_000, 'remus-wan status')).code).toBe(0);
    const shown = JSON.parse(cli.log()) as ReceiverStatus;
    expect(shown.primary).toBe('lost');
    expect(shown.lastCommittedEpoch).toBe(kept);
    expect(shown.store.committedEpoch).toBe(kept);

    expect(await receiver.stop()).toEqual({ code: 0, signal: null });
    const rx = readJsonl<RxLine>(rxStats);
    const tx = readJsonl<TxLine>(txStats, { tornTail: true });
    expect(rx.map((r) => r.epoch)).toEqual(range(1, kept));
    expect(fullEpochs(rx)).toEqual([1]);
    expect(digestMismatches(tx, rx)).toEqual([]);
    expect(tx.length, 'epochs the sender logged before it was killed').toBeGreaterThanOrEqual(10);
    // the replica kept is the one committed at that epoch
    expect(await digestFile(join(spec.store, 'replica.img'))).toBe(rx.at(-1)?.replicaDigest);
  }, 60_000);

  it('the link cut and restored within the dead time: no loss declared, no full copy, no epoch missing', async () => {
    const rnd = seededRandom(SEED ^ 0x5eed04);
    const writer = await startWriter((SEED + 4) % 1000);
    const hookFile = join(dir, 'hook.out');
    const [port, metricsPort, txMetrics] = (await freePorts(3)) as [number, number, number];
    const spec: ReceiverSpec = {
      port,
      metricsPort,
      store: join(dir, 'store'),
      deadTime: '3s',
      hookFile,
    };
    const rxStats = join(dir, 'rx.jsonl');
    const txStats = join(dir, 'tx.jsonl');
    const receiver = await startReceiver(spec, 'receiver', rxStats);
    relay = await Relay.start(spec.port);
    const sender = startSender({ port: relay.port, metricsPort: txMetrics, stats: txStats, writer });
    await waitCommitted(spec.metricsPort, 10, 30_000, sender, 'before the first cut');

    // watch the receiver's view of the primary all along
    const seen = new Map<string, number>();
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const s = await rxStatus(spec.metricsPort);
        if (s) seen.set(s.primary, (seen.get(s.primary) ?? 0) + 1);
        await sleep(100);
      }
    })();

    const CUTS = 4;
    const cuts: string[] = [];
    try {
      for (let k = 1; k <= CUTS; k++) {
        await sleep(Math.round(300 + rnd() * 700));
        const ms = Math.round(500 + rnd() * 1000);
        const acked = (await txStatus(txMetrics))?.lastAckedEpoch ?? 0;
        const t = performance.now();
        relay.cut(ms);
        cuts.push(`cut ${k}: ${ms} ms at acked ${acked}`);
        await sleep(ms);
        let st: SenderStatus | undefined;
        await waitFor(
          `cut ${k} (${ms} ms): the sender to get 3 more epochs acknowledged`,
          15_000,
          async () => {
            if (!sender.alive) throw new Error(`the sender exited ${JSON.stringify(sender.exitStatus)}`);
            st = await txStatus(txMetrics);
            return (st?.lastAckedEpoch ?? 0) >= acked + 3;
          },
          () => `sender ${JSON.stringify(st)}; ${cuts.join('; ')}`,
        );
        cuts[k - 1] += `, back after ${Math.round(performance.now() - t)} ms`;
        expect(seen.get('lost') ?? 0, `no loss declared (${cuts.join('; ')})`).toBe(0);
      }
      const acked = (await txStatus(txMetrics))?.lastAckedEpoch ?? 0;
      await waitFor('10 more epochs after the last cut', 15_000, async () => {
        return ((await txStatus(txMetrics))?.lastAckedEpoch ?? 0) >= acked + 10;
      });
    } finally {
      watching = false;
      await watcher;
    }
    expect(relay.counts.cut, 'connections the cuts destroyed').toBeGreaterThanOrEqual(CUTS);
    expect(seen.get('lost') ?? 0, `status never said lost (${cuts.join('; ')})`).toBe(0);
    expect(hookLines(hookFile), 'the hook never ran').toEqual([]);
    const txSt = await txStatus(txMetrics);
    const rxSt = await rxStatus(spec.metricsPort);
    expect(txSt?.counters.reconnects).toBeGreaterThanOrEqual(CUTS);
    expect(txSt?.counters.fullEpochs, 'full copies the sender made').toBe(1);
    expect(rxSt?.counters.resumes, 'the session resumed after each cut').toBeGreaterThanOrEqual(CUTS);

    expect(await sender.stop()).toEqual({ code: 0, signal: null });
    expect(await receiver.stop()).toEqual({ code: 0, signal: null }); // well within the dead time
    expect(hookLines(hookFile), 'the hook never ran').toEqual([]);
    const tx = readJsonl<TxLine>(txStats);
    const rx = readJsonl<RxLine>(rxStats);
    const last = tx.at(-1)?.epoch ?? 0;
    expect(last).toBeGreaterThanOrEqual(txSt?.lastAckedEpoch ?? Number.POSITIVE_INFINITY);
    expect(
      tx.map((t) => t.epoch),
      'acknowledged epochs: every one through the end',
    ).toEqual(range(1, last));
    expect(
      rx.map((r) => r.epoch),
      'committed epochs: consecutive, none twice',
    ).toEqual(range(1, rx.length));
    expect(rx.length).toBeGreaterThanOrEqual(last);
    expect(rx.length - last, 'committed, not acknowledged at the end').toBeLessThan(5);
    expect(fullEpochs(rx)).toEqual([1]);
    expect(fullEpochs(tx)).toEqual([1]);
    expect(digestMismatches(tx, rx)).toEqual([]);
  }, 90_000);
});
