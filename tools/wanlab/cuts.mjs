#!/usr/bin/env node
/**
 * Link cuts on the WAN lab: the daemon pair replicates across the emulated WAN (sender in site A,
 * receiver in site B, a workload writer paused around each capture, --verify digests at every epoch),
 * and the link is cut N times for 0.5–5 s, each cut inside the receiver's dead time (8 s). Then:
 * no "primary lost", one full copy only (the first), every acknowledged epoch committed once and in
 * order, and each one byte-identical at the backup.
 *
 *   node tools/wanlab/cuts.mjs [--cuts 50] [--rtt 25ms] [--rate 100mbit] [--loss 0.1%] [--json]
 *
 * Prints the cuts and the verdict; exits 1 when a check fails. Needs root, `npm run build`.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';

const root = join(dirname(new URL(import.meta.url).pathname), '..', '..');
const WAN = join(root, 'dist', 'src', 'cli', 'wan.js');
const WRITER = join(root, 'dist', 'tools', 'workload', 'writer.js');
const LAB = join(root, 'tools', 'wanlab', 'wanlab.mjs');
const { values: o } = parseArgs({
  options: {
    cuts: { type: 'string', default: '50' },
    rtt: { type: 'string', default: '25ms' },
    rate: { type: 'string', default: '100mbit' },
    loss: { type: 'string', default: '0.1%' },
    seed: { type: 'string', default: '1' },
    json: { type: 'boolean', default: false },
  },
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let x = Number(o.seed) | 1;
const rnd = () => {
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  return (x >>> 0) / 2 ** 32;
};
const name = `cut${process.pid % 100000}`;
const ns = { a: `wl-${name}-a`, b: `wl-${name}-b` };
const dir = mkdtempSync(join(tmpdir(), 'rwan-cuts-'));
const children = [];
const start = (args) => {
  const c = spawn(args[0], args.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  c.stdout.on('data', (d) => (out += d));
  c.stderr.on('data', (d) => (out += d));
  c.exited = new Promise((r) => c.once('exit', (code, signal) => r({ code, signal })));
  c.output = () => out;
  children.push(c);
  return c;
};
const readJsonl = (p) => {
  try {
    return readFileSync(p, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
  } catch {
    return [];
  }
};

let verdict;
try {
  execFileSync(process.execPath, [
    LAB,
    'up',
    '--name',
    name,
    '--rtt',
    o.rtt,
    '--rate',
    o.rate,
    '--loss',
    o.loss,
    '--bytes',
    '5MB',
    '--json',
  ]);
  const image = join(dir, 'primary.img');
  const dlog = join(dir, 'primary.dlog');
  const writer = start([
    process.execPath,
    WRITER,
    '--image',
    image,
    '--pages',
    '4096',
    '--seed',
    o.seed,
    '--dirty-log',
    dlog,
    '--rate',
    '2000',
  ]);
  for (let i = 0; !/^ready (\d+)$/m.test(writer.output()); i++) {
    if (i > 300) throw new Error(`the writer did not start: ${writer.output()}`);
    await sleep(50);
  }
  const writerPid = Number(/^ready (\d+)$/m.exec(writer.output())[1]);
  const rxStats = join(dir, 'rx.jsonl');
  const txStats = join(dir, 'tx.jsonl');
  const receiver = start([
    'ip',
    'netns',
    'exec',
    ns.b,
    process.execPath,
    WAN,
    'receive',
    '--insecure',
    '--listen',
    '10.203.0.2:7800',
    '--store',
    join(dir, 'store'),
    '--stats',
    rxStats,
    '--verify',
    '--dead-time',
    '8s',
  ]);
  await sleep(1000);
  const sender = start([
    'ip',
    'netns',
    'exec',
    ns.a,
    process.execPath,
    WAN,
    'send',
    '--insecure',
    '--connect',
    '10.203.0.2:7800',
    '--image',
    image,
    '--dirty-log',
    dlog,
    '--pause-pid',
    String(writerPid),
    '--epoch',
    '100ms',
    '--stats',
    txStats,
    '--verify',
  ]);
  for (let i = 0; readJsonl(txStats).length < 10; i++) {
    if (i > 600) throw new Error(`no replication: ${sender.output().slice(-2000)}`);
    await sleep(50);
  }
  const cuts = [];
  for (let k = 1; k <= Number(o.cuts); k++) {
    await sleep(Math.round(500 + rnd() * 1500));
    const ms = Math.round(500 + rnd() * 4500);
    const before = readJsonl(txStats).at(-1)?.epoch ?? 0;
    spawnSync('ip', ['-n', ns.a, 'link', 'set', 'wla', 'down']);
    await sleep(ms);
    spawnSync('ip', ['-n', ns.a, 'link', 'set', 'wla', 'up']);
    // back: a few more epochs acknowledged before the next cut
    const t0 = Date.now();
    while ((readJsonl(txStats).at(-1)?.epoch ?? 0) < before + 3) {
      if (Date.now() - t0 > 30_000) throw new Error(`cut ${k} (${ms} ms): replication did not come back`);
      await sleep(50);
    }
    cuts.push({ cut: k, ms, backAfterMs: Date.now() - t0 });
    if (!o.json) process.stdout.write(`cut ${k}: ${ms} ms, replicating again ${Date.now() - t0} ms later\n`);
  }
  sender.kill('SIGTERM');
  await sender.exited;
  receiver.kill('SIGTERM');
  await receiver.exited;
  const tx = readJsonl(txStats);
  const rx = readJsonl(rxStats);
  const byEpoch = new Map(tx.map((t) => [t.epoch, t.digest]));
  const contiguous = (list) => list.every((e, i) => e === i + 1);
  verdict = {
    cuts: cuts.length,
    longestCutMs: Math.max(...cuts.map((c) => c.ms)),
    epochsAcknowledged: tx.length,
    epochsCommitted: rx.length,
    primaryLost: (receiver.output().match(/"msg":"primary lost"/g) ?? []).length,
    fullCopies: rx.filter((r) => r.full).length,
    acknowledgedInOrder: contiguous(tx.map((t) => t.epoch)),
    committedInOrder: contiguous(rx.map((r) => r.epoch)),
    digestMismatches: rx.filter((r) => byEpoch.has(r.epoch) && r.replicaDigest !== byEpoch.get(r.epoch))
      .length,
    everyAcknowledgedCommitted: tx.every((t) => rx.some((r) => r.epoch === t.epoch)),
  };
  verdict.ok =
    verdict.primaryLost === 0 &&
    verdict.fullCopies === 1 &&
    verdict.acknowledgedInOrder &&
    verdict.committedInOrder &&
    verdict.digestMismatches === 0 &&
    verdict.everyAcknowledgedCommitted;
  process.stdout.write(
    o.json ? `${JSON.stringify({ ...verdict, results: cuts })}\n` : `${JSON.stringify(verdict)}\n`,
  );
} finally {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await Promise.all(children.map((c) => c.exited));
  spawnSync(process.execPath, [LAB, 'down', '--name', name]);
  rmSync(dir, { recursive: true, force: true });
}
process.exit(verdict?.ok ? 0 : 1);
