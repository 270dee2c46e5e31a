/**
 * The Xen adapter end to end, with stand-ins for xl that speak the real handshake (tools/xen):
 *
 *   xl-sender.mjs ──sh -c "exec remus-wan tunnel … HOST xl migrate-receive -r -e"──► the tunnel
 *     ──(TCP, through a relay the test can cut)──► remus-wan xen-receive ──► xl-receiver.mjs
 *
 * - the banner dance through the tunnel, the stream byte for byte at the backup's receive command,
 *   what it writes after its banner back to xl (once, across reconnects), each checkpoint's
 *   write-return time recorded, the compression reported;
 * - connections cut in the middle of checkpoints: the receive command's stdin stays open, the tunnel
 *   resumes, the bytes stay identical; only POST /promote ends the stream, at a complete checkpoint;
 * - what is refused: a command vector that is not xl remus's, a tunnel to a replica receiver, a
 *   receive command without xl's banner.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import {
  assertFreshBuild,
  freePorts,
  type Proc,
  Procs,
  Relay,
  readJsonl,
  status,
  WAN,
  waitFor,
} from './daemon-harness.js';

const root = join(import.meta.dirname, '..', '..');
const tool = (name: string) => join(root, 'tools', 'xen', name);
const dir = mkdtempSync(join(tmpdir(), 'rwan-xen-'));
const procs = new Procs(dir);
const relays: Relay[] = [];
const senders = new Set<ReturnType<typeof spawn>>();
afterAll(async () => {
  for (const c of senders) c.kill('SIGKILL');
  await procs.killAll();
  for (const r of relays) await r.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A generated stream in `dir`. */
function stream(name: string, args: string[]): string {
  const file = join(dir, `${name}.stream`);
  execFileSync(process.execPath, [tool('generate.mjs'), ...args, '--out', file]);
  return file;
}

/** xen-receive feeding the receiver stand-in, which checks the bytes against `expect`. */
async function backup(
  name: string,
  expect: string,
): Promise<{ rx: Proc; port: number; http: number; report: string }> {
  const [port, http] = (await freePorts(2)) as [number, number];
  const report = join(dir, `${name}.times`);
  const rx = procs.start(`${name}-xen-receive`, [
    WAN,
    ...['xen-receive', '--insecure', '--listen', `127.0.0.1:${port}`, '--metrics', `127.0.0.1:${http}`],
    ...['--dead-time', '10s', '--stats', join(dir, `${name}-rx.stats`)],
    ...[
      '--receive-command',
      `${process.execPath} ${tool('xl-receiver.mjs')} --expect ${expect} --times ${report} --say back-channel-${name}`,
    ],
  ]);
  await rx.waitForLine(/"msg":"listening"/, 15_000);
  return { rx, port, http, report };
}

/** The sender stand-in, running the tunnel as xl would; resolves with its exit code and output. */
function xlSender(
  streamFile: string,
  port: number,
  o: { interval?: number; log?: string; tunnel?: string[] } = {},
): Promise<{ code: number | null; out: string; err: string }> {
  const tunnel = [
    process.execPath,
    WAN,
    'tunnel',
    '--insecure',
    '--port',
    String(port),
    '--log-level',
    'warn',
    ...(o.tunnel ?? []),
  ];
  const child = spawn(
    process.execPath,
    [
      tool('xl-sender.mjs'),
      '--cmd',
      tunnel.join(' '),
      '--host',
      '127.0.0.1',
      '--stream',
      streamFile,
      '--interval',
      String(o.interval ?? 20),
      '--e',
      ...(o.log ? ['--log', o.log] : []),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  senders.add(child);
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  return new Promise((resolve) =>
    child.on('exit', (code) => {
      senders.delete(child);
      resolve({ code, out, err });
    }),
  );
}

/** POST /promote to the backup, then wait for the receiver stand-in's report in its log. */
async function promoteAndReport(b: { rx: Proc; http: number }): Promise<Record<string, unknown>> {
  const res = await fetch(`http://127.0.0.1:${b.http}/promote`, { method: 'POST', body: '{"token":1}' });
  expect(res.status).toBe(200);
  await b.rx.exited;
  const m = /\{"xlReceiver":(\{.*\})\}/.exec(b.rx.log());
  expect(m, b.rx.tail()).not.toBeNull();
  return JSON.parse((m as RegExpExecArray)[1] as string) as Record<string, unknown>;
}

describe('remus-wan tunnel → xen-receive, with xl stand-ins', () => {
  it('the banner through the tunnel, the stream byte for byte, write-return times, compression', async () => {
    assertFreshBuild();
    const file = stream('a', ['--pages', '4000', '--checkpoints', '12', '--dirty', '300', '--live', '2']);
    const b = await backup('a', file);
    const log = join(dir, 'a-sender.log');
    const sent = await xlSender(file, b.port, { log, tunnel: ['--stats', join(dir, 'a-tunnel.stats')] });
    expect(sent.code, `${sent.err}\n${b.rx.tail()}`).toBe(0);
    // what the receive command wrote after its banner reached xl, once
    expect(sent.err).toContain('{"backChannel":"back-channel-a"}');
    const commits = readJsonl<{ checkpoint: number; returnedMs: number }>(log);
    expect(commits.map((c) => c.checkpoint)).toEqual(Array.from({ length: 13 }, (_, i) => i));
    // every checkpoint is at the backup's receive command before the stream is ended there
    const st = await status<{ lastCompleteCheckpoint: number; ended: string | null }>(b.http);
    expect(st).toMatchObject({ lastCompleteCheckpoint: 12, ended: null });
    const report = await promoteAndReport(b);
    expect(report).toMatchObject({
      identical: true,
      end: { at: 'checkpoint', checkpoints: 13 },
      error: null,
    });
    const tunnel = readJsonl<{
      epoch: number;
      rawBytes: number;
      wireBytes: number;
      checkpoint: number;
      full: boolean;
    }>(join(dir, 'a-tunnel.stats'));
    const after = tunnel.filter((e) => e.checkpoint > 0);
    const raw = after.reduce((n, e) => n + e.rawBytes, 0);
    const wire = after.reduce((n, e) => n + e.wireBytes, 0);
    const total = readFileSync(file).length;
    console.log(
      `Xen tunnel: ${(total / 2 ** 20).toFixed(1)} MiB stream, ${tunnel.length} epochs; checkpoints after the first pass: ` +
        `${(raw / 2 ** 20).toFixed(2)} MiB → ${(wire / 2 ** 20).toFixed(2)} MiB on the wire (${((100 * wire) / raw).toFixed(1)} %)`,
    );
    expect(wire / raw).toBeLessThan(0.3);
  }, 120_000);

  it('connections cut mid-checkpoint: the receive command’s stdin stays open, the tunnel resumes, bytes identical', async () => {
    const file = stream('b', ['--pages', '3000', '--checkpoints', '60', '--dirty', '400', '--seed', '5']);
    const b = await backup('b', file);
    const relay = await Relay.start(b.port);
    relays.push(relay);
    const done = xlSender(file, relay.port, { interval: 25 });
    const seen: number[] = [];
    for (const at of [10, 30]) {
      await waitFor(`checkpoint ${at} at the backup`, 30_000, async () => {
        const s = await status<{ lastCompleteCheckpoint: number | null }>(b.http);
        return (s?.lastCompleteCheckpoint ?? -1) >= at;
      });
      relay.cut(300); // every connection dropped, new ones reset for 300 ms: inside a checkpoint
      seen.push(
        ((await status<{ lastCompleteCheckpoint: number }>(b.http)) as { lastCompleteCheckpoint: number })
          .lastCompleteCheckpoint,
      );
    }
    const sent = await done;
    expect(sent.code, `${sent.err}\n${b.rx.tail()}`).toBe(0);
    expect(sent.err).toContain('{"backChannel":"back-channel-b"}'); // sent again on each reconnect, written once
    const st = await status<{ counters: { resumes: number }; lastCompleteCheckpoint: number; ended: null }>(
      b.http,
    );
    expect(st?.counters.resumes).toBeGreaterThanOrEqual(2);
    expect(st).toMatchObject({ lastCompleteCheckpoint: 60, ended: null });
    expect(b.rx.alive).toBe(true); // the receive command never saw the cuts
    const report = await promoteAndReport(b);
    expect(report).toMatchObject({ identical: true, end: { at: 'checkpoint', checkpoints: 61 } });
    expect(seen.every((c) => c < 60)).toBe(true);
  }, 120_000);

  it('promoted in the middle of the stream: the receive command gets every complete checkpoint, the tunnel stops', async () => {
    const file = stream('c', ['--pages', '2000', '--checkpoints', '200', '--dirty', '200', '--seed', '6']);
    const b = await backup('c', file);
    const done = xlSender(file, b.port, { interval: 20 });
    await waitFor('checkpoint 20 at the backup', 30_000, async () => {
      const s = await status<{ lastCompleteCheckpoint: number | null }>(b.http);
      return (s?.lastCompleteCheckpoint ?? -1) >= 20;
    });
    const res = await fetch(`http://127.0.0.1:${b.http}/promote`, { method: 'POST', body: '{"token":3}' });
    expect(((await res.json()) as { promoted: { token: number } }).promoted.token).toBe(3);
    await b.rx.exited;
    const m = /\{"xlReceiver":(\{.*\})\}/.exec(b.rx.log());
    const report = JSON.parse((m as RegExpExecArray)[1] as string) as {
      end: { at: string; checkpoints: number };
      identical: boolean;
    };
    expect(report.identical).toBe(false); // a prefix of the stream
    expect(['checkpoint', 'partial']).toContain(report.end.at);
    expect(report.end.checkpoints).toBeGreaterThanOrEqual(21);
    // the tunnel is refused (PROMOTED) and stops; xl's writes then fail (the primary resumes alone)
    const sent = await done;
    expect(sent.code).not.toBe(0);
    expect(sent.err).toMatch(/promoted \(fencing token 3\)|writing/);
  }, 120_000);

  it('refused: a command that is not xl remus’s, a tunnel to a replica receiver, a receive command without the banner', async () => {
    const { main } = await import('../../src/cli/wan.js');
    let err = '';
    const code = await main(['tunnel', '--insecure', 'backup', 'xl', 'migrate-receive', '--colo'], {
      out: () => undefined,
      err: (t) => (err += t),
    });
    expect(code).toBe(2);
    expect(err).toMatch(/RWAN_ERR_USAGE: remus-wan tunnel carries what xl remus runs/);

    const file = stream('d', ['--pages', '200', '--checkpoints', '2', '--dirty', '10']);
    // a replica receiver: it refuses the tunnel (INCOMPATIBLE), so xl never gets a banner
    const [rport, rhttp] = (await freePorts(2)) as [number, number];
    const replica = procs.start('d-receive', [
      WAN,
      ...[
        'receive',
        '--insecure',
        '--listen',
        `127.0.0.1:${rport}`,
        '--store',
        join(dir, 'd-store'),
        '--metrics',
        `127.0.0.1:${rhttp}`,
      ],
    ]);
    await replica.waitForLine(/"msg":"listening"/, 15_000);
    const r1 = await xlSender(file, rport);
    expect(r1.code).toBe(3);
    expect(r1.err).toMatch(/closed before its banner/);
    expect(replica.log()).toMatch(/it needs remus-wan xen-receive/);
    replica.signal('SIGTERM');
    await replica.exited;

    // a receive command that prints something else than xl's banner
    const [xport] = (await freePorts(1)) as [number];
    const bad = procs.start('d-xen-receive', [
      WAN,
      ...[
        'xen-receive',
        '--insecure',
        '--listen',
        `127.0.0.1:${xport}`,
        '--receive-command',
        'echo xl: command not found; exit 127',
      ],
    ]);
    await bad.waitForLine(/"msg":"listening"/, 15_000);
    const r2 = await xlSender(file, xport);
    expect(r2.code).toBe(3);
    expect(r2.err).toMatch(/the receive command: .*xl: command not found/);
    bad.signal('SIGTERM');
    await bad.exited;
    await sleep(0);
  }, 120_000);

  it('output commit: with the gate, xl’s last write of each checkpoint returns only after a round trip to the backup', async () => {
    const file = stream('g', ['--pages', '1500', '--checkpoints', '15', '--dirty', '100', '--seed', '8']);
    const oneWay = 40; // ms each way through the relay: a round trip of 80 ms at least
    const tails: Record<string, number[]> = {};
    for (const gate of ['on', 'off']) {
      const b = await backup(`g-${gate}`, file);
      const relay = await Relay.start(b.port, { delayMs: oneWay });
      relays.push(relay);
      const log = join(dir, `g-${gate}.log`);
      const stats = join(dir, `g-${gate}-tunnel.stats`);
      const sent = await xlSender(file, relay.port, { log, tunnel: ['--gate', gate, '--stats', stats] });
      expect(sent.code, `${sent.err}\n${b.rx.tail()}`).toBe(0);
      // the first checkpoint (the whole memory) is left out: its tail waits behind its bulk either way
      tails[gate] = readJsonl<{ checkpoint: number; tailMs: number }>(log)
        .filter((r) => r.checkpoint > 0)
        .map((r) => r.tailMs)
        .sort((x, y) => x - y);
      const ends = readJsonl<{ checkpointEnd?: boolean; gated?: boolean }>(stats).filter(
        (e) => e.checkpointEnd,
      );
      expect(ends).toHaveLength(16);
      expect(ends.every((e) => e.gated === (gate === 'on'))).toBe(true);
      expect((await promoteAndReport(b)).identical).toBe(true);
    }
    const [on, off] = [tails.on as number[], tails.off as number[]];
    const p50 = (v: number[]) => v[Math.floor(v.length / 2)] as number;
    console.log(
      `output commit over a ${2 * oneWay} ms round trip: from the guest's resume to xl's last write returning, ` +
        `gated p50 ${p50(on).toFixed(1)} ms (min ${on[0]?.toFixed(1)}), ungated p50 ${p50(off).toFixed(1)} ms`,
    );
    // held: the backup's acknowledgement had to come back through the delay line
    expect(on[0]).toBeGreaterThanOrEqual(2 * oneWay);
    // not held: xl's write returned without waiting for the network
    expect(p50(off)).toBeLessThan(2 * oneWay);
  }, 180_000);
});
