#!/usr/bin/env node
/**
 * The output-commit proof: nothing a client was told is ever lost. Each run starts a backup
 * (`remus-wan receive`), a key-value service whose state is one file (kv-service.mjs), and a primary
 * (`remus-wan send` of that file, pausing the service around each capture, with the output-commit
 * proxy in front of it). Clients write through the proxy, each a fresh key, and record every write
 * whose acknowledgement reached them. At a random moment the primary dies (kill -9 of the sender and
 * the service); the backup is promoted (POST /promote: the replica is then exactly its last complete
 * epoch) and every acknowledged write is looked up in its replica. A missing one is a loss.
 *
 *   node tools/commit/proof.mjs [--runs 20] [--clients 4] [--epoch 50ms] [--kill-between 300,1500]
 *                               [--direct] [--json]
 *
 * Prints one line per run and the totals (runs, writes acknowledged, losses: must be 0); exits 1 on
 * any loss, and 2 when a run could not be done (a daemon that did not start or was not promoted: the
 * reason, with its output, on stderr; with --json also `{"error", "results"}` on stdout). A run whose
 * port was taken before its daemon opened it begins again on new ports (up to 3 times). `--direct`
 * is the control: the clients talk to the service itself, past the proxy, and then acknowledged
 * writes are lost. Needs `npm run build`.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { freePorts } from '../../dist/tools/bench/harness.js';

const root = join(dirname(new URL(import.meta.url).pathname), '..', '..');
const WAN = join(root, 'dist', 'src', 'cli', 'wan.js');
const KV = join(root, 'tools', 'commit', 'kv-service.mjs');
const SLOT = 64;
const SLOTS = 262144; // a 16 MiB state file: enough fresh keys for the fastest run

const { values: o } = parseArgs({
  options: {
    runs: { type: 'string', default: '20' },
    clients: { type: 'string', default: '4' },
    epoch: { type: 'string', default: '50ms' },
    'kill-between': { type: 'string', default: '300,1500' },
    direct: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
});
const [killMin, killMax] = o['kill-between'].split(',').map(Number);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A child process named `name`, its output in `output()`, resolved exit in `exited`. */
function start(name, args) {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  child.exited = new Promise((r) => child.once('exit', r));
  child.output = () => out;
  child.processName = name;
  return child;
}

const gone = (c) => c.exitCode !== null || c.signalCode !== null;

/** A run that could not begin: a daemon or the service ended, or did not get ready, in time. */
class StartError extends Error {}

/** Waits for `cond`; a child of `children` that ends first, or `ms` passing, is a StartError. */
async function until(what, ms, cond, children) {
  const t0 = Date.now();
  while (!(await cond())) {
    const ended = children.find(gone);
    if (ended)
      throw new StartError(
        `the ${ended.processName} exited (${ended.exitCode ?? ended.signalCode}) before ${what}:\n${ended.output().trim()}`,
      );
    if (Date.now() - t0 > ms) throw new StartError(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

async function status(port) {
  try {
    return await (await fetch(`http://127.0.0.1:${port}/status`)).json();
  } catch {
    return undefined;
  }
}

async function oneRun(run, next) {
  const dir = mkdtempSync(join(tmpdir(), 'rwan-proof-'));
  const image = join(dir, 'state.img');
  writeFileSync(image, Buffer.alloc(SLOT * SLOTS));
  const [rx, rxHttp, svc, proxy, txHttp] = await freePorts(5);
  const children = [];
  try {
    const receiver = start('receiver', [
      WAN,
      'receive',
      '--insecure',
      '--listen',
      `127.0.0.1:${rx}`,
      '--store',
      join(dir, 'store'),
      '--metrics',
      `127.0.0.1:${rxHttp}`,
      '--dead-time',
      '30s',
      '--log-level',
      'warn',
    ]);
    children.push(receiver);
    const service = start('service', [KV, '--file', image, '--listen', `127.0.0.1:${svc}`]);
    children.push(service);
    await until('the service listened', 10_000, () => service.output().includes('listening'), children);
    const sender = start('sender', [
      WAN,
      'send',
      '--connect',
      `127.0.0.1:${rx}`,
      '--image',
      image,
      '--insecure',
      '--epoch',
      o.epoch,
      '--pause-pid',
      String(service.pid),
      '--proxy',
      `127.0.0.1:${proxy}=127.0.0.1:${svc}`,
      '--metrics',
      `127.0.0.1:${txHttp}`,
      '--log-level',
      'warn',
    ]);
    children.push(sender);
    await until(
      'replication began',
      20_000,
      async () => (await status(txHttp))?.state === 'replicating',
      children,
    );

    // clients: each writes a fresh key, waits for its acknowledgement, records it, goes on
    const acked = new Map();
    let stop = false;
    const clients = Array.from(
      { length: Number(o.clients) },
      () =>
        new Promise((resolve) => {
          // --direct: past the proxy, to the service itself (the control: acknowledgements not held)
          const c = connect(o.direct ? svc : proxy, '127.0.0.1');
          let buf = '';
          let pending = null;
          const send = () => {
            if (stop) return c.destroy();
            const k = next();
            if (k >= SLOTS) return c.destroy();
            pending = { k, v: `r${run}v${k}x${Math.floor(Math.random() * 1e9)}` };
            c.write(`SET ${pending.k} ${pending.v}\n`);
          };
          c.on('connect', send);
          c.on('data', (d) => {
            buf += d;
            for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
              const line = buf.slice(0, nl);
              buf = buf.slice(nl + 1);
              if (pending && line === `OK ${pending.k} ${pending.v}`) {
                acked.set(pending.k, pending.v);
                pending = null;
                send();
              }
            }
          });
          c.on('close', resolve);
          c.on('error', () => undefined);
        }),
    );
    const killAt = killMin + Math.random() * (killMax - killMin);
    await sleep(killAt);
    sender.kill('SIGKILL'); // the primary dies: its sender (and proxy) and its service
    service.kill('SIGKILL');
    stop = true;
    await Promise.all([sender.exited, service.exited]);
    await Promise.all(clients);
    // the backup takes over: its replica is exactly its last complete epoch
    const res = await fetch(`http://127.0.0.1:${rxHttp}/promote`, { method: 'POST', body: '{"token":1}' });
    const promoted = (await res.json()).promoted;
    if (!res.ok || !promoted) throw new Error(`the backup was not promoted (HTTP ${res.status})`);
    const replica = readFileSync(join(dir, 'store', 'replica.img'));
    let lost = 0;
    for (const [k, v] of acked) {
      const text = replica
        .subarray(k * SLOT, (k + 1) * SLOT)
        .toString()
        .replace(/\0+$/, '');
      if (text !== `${k}=${v}`) lost++;
    }
    receiver.kill('SIGTERM');
    await receiver.exited;
    return {
      run,
      killAtMs: Math.round(killAt),
      acked: acked.size,
      lost,
      backupEpoch: promoted?.epoch ?? null,
    };
  } finally {
    for (const c of children) if (!gone(c)) c.kill('SIGKILL');
    await Promise.all(children.map((c) => c.exited));
    rmSync(dir, { recursive: true, force: true });
  }
}

const results = [];
try {
  for (let run = 1; run <= Number(o.runs); run++) {
    let key = 0;
    let r;
    for (let attempt = 1; r === undefined; attempt++) {
      try {
        r = await oneRun(run, () => key++);
      } catch (err) {
        // a port found free but taken by another process before its daemon opened it: the run had
        // not begun (no client had written), so it begins again on new ports
        if (!(err instanceof StartError) || !err.message.includes('EADDRINUSE') || attempt === 3) throw err;
        process.stderr.write(
          `run ${run}: a port was taken before its daemon opened it; again on new ports\n`,
        );
        key = 0;
      }
    }
    results.push(r);
    if (!o.json)
      process.stdout.write(
        `run ${r.run}: killed after ${r.killAtMs} ms, ${r.acked} writes acknowledged, ${r.lost} lost (backup at epoch ${r.backupEpoch})\n`,
      );
  }
} catch (err) {
  // no verdict: say why, and with --json say it on stdout too (with the runs done)
  process.stderr.write(`proof: run ${results.length + 1} failed: ${err.message}\n`);
  if (o.json) process.stdout.write(`${JSON.stringify({ error: err.message, results })}\n`);
  process.exit(2);
}
const total = {
  runs: results.length,
  writesAcknowledged: results.reduce((s, r) => s + r.acked, 0),
  losses: results.reduce((s, r) => s + r.lost, 0),
};
process.stdout.write(
  o.json
    ? `${JSON.stringify({ ...total, results })}\n`
    : `${total.runs} runs, ${total.writesAcknowledged} acknowledged writes, ${total.losses} lost\n`,
);
process.exit(total.losses === 0 ? 0 : 1);
