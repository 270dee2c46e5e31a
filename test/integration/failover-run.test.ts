/**
 * The backup's failover controller (runner.ts) with every part real, on loopback: site A's sender
 * replicating to site B's receiver (remus-wan, 1 s dead time), a witness probing A, ExaBGP as B's
 * speaker and BIRD as the upstream router (bgp-lab.ts).
 *
 * - kill -9 of A's sender: B's receiver declares the primary lost after the dead time, the witness
 *   cannot reach A either and grants token 1, B announces, and the prefix is at BIRD from B. The time
 *   from the first tick that saw the loss to the route at BIRD is reported.
 * - the same loss with a witness that still reaches A (a partition between A and B only): B must not
 *   announce, and says why.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControllerConfig } from '../../src/failover/controller.js';
import { ExaBgpPipe } from '../../src/failover/exabgp-pipe.js';
import { parseRoute } from '../../src/failover/routes.js';
import { Runner } from '../../src/failover/runner.js';
import { Witness, witnessServer } from '../../src/failover/witness.js';
import { type BgpLab, haveBgpTools, startBgpLab } from './bgp-lab.js';
import {
  assertFreshBuild,
  freePorts,
  type Proc,
  Procs,
  startPlainReceiver,
  startPlainSender,
  waitFor,
} from './daemon-harness.js';

const dir = mkdtempSync(join(tmpdir(), 'rwan-failover-run-'));
const procs = new Procs(dir);
const closers: Array<() => Promise<void> | void> = [];
let lab: BgpLab;

beforeAll(async () => {
  expect(haveBgpTools(), 'bird2 and exabgp are needed (tools/system-deps.sh)').toBe(true);
  assertFreshBuild();
  lab = await startBgpLab();
}, 60_000);
afterAll(async () => {
  for (const c of closers.reverse()) await c();
  await procs.killAll();
  await lab?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const backup: ControllerConfig = {
  role: 'backup',
  rise: 1,
  fall: 3,
  med: { up: 100, down: 1000, disabled: 500 },
  withdrawOnDown: true,
  fenceAfterMs: 1000,
};

/** A replicating pair: A's sender (its metrics port stands for A, the witness probes it) to B's receiver. */
async function pair(name: string): Promise<{ sender: Proc; rxUrl: string; aPort: number }> {
  const { rxUrl, port } = await startPlainReceiver(procs, dir, name);
  const { sender, txPort } = await startPlainSender(procs, dir, name, port);
  await waitFor('replication', 20_000, async () => {
    try {
      return ((await (await fetch(`${rxUrl}/status`)).json()) as { primary?: string }).primary === 'alive';
    } catch {
      return false;
    }
  });
  return { sender, rxUrl, aPort: txPort };
}

async function witnessFor(host: string, port: number): Promise<string> {
  const w = await Witness.open({
    primary: { host, port },
    tokenFile: join(dir, `witness-${port}.token`),
    probeTimeoutMs: 300,
  });
  const server = witnessServer(w);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  closers.push(() => new Promise<void>((r) => server.close(() => r())));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}

describe('remus-failover controller, backup site, real daemons, witness, ExaBGP and BIRD', () => {
  it('kill -9 of the primary: promoted once with the witness’s grant, the prefix moves to B at BIRD', async () => {
    const site = await lab.speaker(5);
    const pipe = await ExaBgpPipe.open(site.pipes);
    closers.push(() => pipe.close());
    const { sender, rxUrl, aPort } = await pair('a');
    const witnessUrl = await witnessFor('127.0.0.1', aPort);
    const log: Array<Record<string, unknown>> = [];
    const tokenFile = join(dir, 'b.token');
    const runner = await Runner.create({
      cfg: backup,
      site: 'b',
      routes: [parseRoute({ prefix: '203.0.113.0/24' })],
      exabgp: pipe,
      daemonUrl: rxUrl,
      witnessUrl,
      tokenFile,
      timeoutMs: 1000,
      log: (e) => log.push(e),
    });
    for (let i = 0; i < 5; i++) {
      await runner.tick();
      await sleep(100);
    }
    expect(runner.state.authority).toBe('standby');
    expect(lab.routeAt('203.0.113.0/24').present).toBe(false);

    sender.signal('SIGKILL');
    await sender.exited;
    let lostAt = 0;
    let promotedAt = 0;
    let lostTicks = 0;
    for (let i = 0; i < 60 && promotedAt === 0; i++) {
      const started = performance.now();
      const d = await runner.tick();
      if (d.daemon.primaryLost) lostTicks++;
      if (lostAt === 0 && d.daemon.primaryLost) lostAt = started;
      if (d.actions.some((a) => a.kind === 'promote')) promotedAt = started;
      else await sleep(100);
    }
    expect(lostTicks).toBe(1); // promoted by the first tick that saw the loss
    expect(promotedAt, JSON.stringify(log.slice(-3))).toBeGreaterThan(0);
    expect(runner.state).toMatchObject({ authority: 'active', phase: 'UP', token: 1 });
    expect(readFileSync(tokenFile, 'utf8')).toBe('1\n');
    const t0 = performance.now();
    while (lab.routeAt('203.0.113.0/24').from !== site.address) {
      if (performance.now() - t0 > 5000) throw new Error('the prefix did not reach BIRD from B');
      await sleep(2);
    }
    const atBird = performance.now();
    // the tick: observe (daemon, witness), decide, the witness's grant, the token file, the announcement
    console.log(
      `failover: from the start of the tick that saw "primary lost" to the route at BIRD: ${(atBird - lostAt).toFixed(1)} ms`,
    );
    // promoted once: later ticks change nothing
    for (let i = 0; i < 3; i++) expect((await runner.tick()).actions).toEqual([]);
    const promoteLog = log.find((e) =>
      (e.actions as Array<{ kind: string }>).some((a) => a.kind === 'promote'),
    );
    expect(((promoteLog?.reasons ?? []) as string[]).join(' ')).toMatch(/witness cannot reach it either/);
    // the receiver ended the stream at its last complete epoch, and says so
    const rx = (await (await fetch(`${rxUrl}/status`)).json()) as {
      promoted: { token: number; epoch: number } | null;
      lastCommittedEpoch: number;
    };
    expect(rx.promoted).toEqual({ token: 1, epoch: rx.lastCommittedEpoch });
    expect(((promoteLog?.reasons ?? []) as string[]).join(' ')).toContain(
      `the replication daemon ended the stream at epoch ${rx.lastCommittedEpoch}`,
    );
  }, 90_000);

  it('a partition between the sites only (the witness still reaches A): B does not announce', async () => {
    const site = await lab.speaker(4);
    const pipe = await ExaBgpPipe.open(site.pipes);
    closers.push(() => pipe.close());
    const { sender, rxUrl } = await pair('p');
    // the witness's view of A: a listener that stays up (A alive, only the A–B path cut)
    const aliveA: Server = createServer((c) => c.destroy());
    await new Promise<void>((r) => aliveA.listen(0, '127.0.0.1', () => r()));
    closers.push(() => new Promise<void>((r) => aliveA.close(() => r())));
    const witnessUrl = await witnessFor('127.0.0.1', (aliveA.address() as { port: number }).port);
    const log: Array<Record<string, unknown>> = [];
    const runner = await Runner.create({
      cfg: backup,
      site: 'b',
      routes: [parseRoute({ prefix: '198.51.100.0/24' })],
      exabgp: pipe,
      daemonUrl: rxUrl,
      witnessUrl,
      tokenFile: join(dir, 'p.token'),
      timeoutMs: 1000,
      log: (e) => log.push(e),
    });
    sender.signal('SIGKILL'); // B hears nothing from A any more
    await sender.exited;
    let sawLoss = 0;
    for (let i = 0; i < 30; i++) {
      const d = await runner.tick();
      if (d.daemon.primaryLost) sawLoss++;
      expect(d.actions.filter((a) => a.kind === 'announce' || a.kind === 'promote')).toEqual([]);
      await sleep(100);
    }
    expect(sawLoss).toBeGreaterThan(5);
    expect(runner.state).toMatchObject({ authority: 'standby', token: 0 });
    expect(lab.routeAt('198.51.100.0/24').present).toBe(false);
    expect(log.flatMap((e) => e.reasons as string[]).join('\n')).toMatch(
      /witness still reaches it: a partition/,
    );
  }, 90_000);

  it('remus-failover run: refuses unsafe timings; as a process, moves the prefix on loss and withdraws on SIGTERM', async () => {
    const { main } = await import('../../src/cli/failover.js');
    let err = '';
    const code = await main(
      [
        'run',
        '--role',
        'backup',
        '--daemon',
        'http://127.0.0.1:1',
        '--token-file',
        join(dir, 'x.token'),
        '--prefix',
        '192.0.2.0/24',
        '--fence-after',
        '2900',
      ],
      { out: () => undefined, err: (t) => (err += t) },
    );
    expect(code).toBe(2);
    expect(err).toMatch(/unsafe timings: .*two sites could announce at once/);

    const site = await lab.speaker(3);
    const { sender, rxUrl, aPort } = await pair('r');
    const witnessUrl = await witnessFor('127.0.0.1', aPort);
    const cli = join(import.meta.dirname, '..', '..', 'dist', 'src', 'cli', 'failover.js');
    const [ctlHttp] = (await freePorts(1)) as [number];
    const metrics = async () => (await fetch(`http://127.0.0.1:${ctlHttp}/metrics`)).text();
    const ctl = procs.start('controller', [
      cli,
      'run',
      '--role',
      'backup',
      '--site',
      'b',
      '--daemon',
      rxUrl,
      '--witness',
      witnessUrl,
      '--token-file',
      join(dir, 'r.token'),
      '--pipe-in',
      site.pipes.in,
      '--pipe-out',
      site.pipes.out,
      '--prefix',
      '192.0.2.0/24',
      '--med',
      '20',
      '--rise',
      '1',
      '--interval',
      '100',
      '--metrics',
      `127.0.0.1:${ctlHttp}`,
    ]);
    await sleep(1000);
    expect(ctl.alive, ctl.tail()).toBe(true);
    expect(lab.routeAt('192.0.2.0/24').present).toBe(false); // standing by
    const before = await metrics();
    expect(before).toMatch(/remus_failover_authority\{authority="standby"\} 1/);
    expect(before).toMatch(/remus_failover_token 0/);
    sender.signal('SIGKILL');
    await sender.exited;
    await waitFor(
      'the prefix at BIRD from B',
      15_000,
      () => lab.routeAt('192.0.2.0/24').from === site.address,
      () => ctl.tail(),
    );
    expect(readFileSync(join(dir, 'r.token'), 'utf8')).toBe('1\n');
    const after = await metrics();
    expect(after).toMatch(/remus_failover_authority\{authority="active"\} 1/);
    expect(after).toMatch(/remus_failover_phase\{phase="UP"\} 1/);
    expect(after).toMatch(/remus_failover_token 1/);
    expect(after).toMatch(/remus_failover_actions_total\{kind="promote"\} 1/);
    const last = (await (await fetch(`http://127.0.0.1:${ctlHttp}/status`)).json()) as {
      authority: string;
      reasons: string[];
    };
    expect(last.authority).toBe('active');
    ctl.signal('SIGTERM');
    expect(await ctl.exited).toMatchObject({ code: 0 });
    await waitFor('the prefix withdrawn', 5000, () => !lab.routeAt('192.0.2.0/24').present);
    expect(ctl.tail()).toMatch(/"msg":"decision".*"promote"/);
  }, 90_000);

  it('remus-failover run --api process, run by ExaBGP: announces through its stdout, sends again when the session comes back, stops with ExaBGP', async () => {
    const { aPort } = await pair('q');
    const txUrl = `http://127.0.0.1:${aPort}`; // the primary's daemon: its sender
    const cli = join(import.meta.dirname, '..', '..', 'dist', 'src', 'cli', 'failover.js');
    const [ctlHttp] = (await freePorts(1)) as [number];
    const state = async () => {
      try {
        return (await (await fetch(`http://127.0.0.1:${ctlHttp}/status`)).json()) as { reasons?: string[] };
      } catch {
        return {};
      }
    };
    const site = await lab.speaker(2, {
      process: [
        process.execPath,
        cli,
        ...['run', '--api', 'process', '--role', 'primary', '--site', 'a', '--daemon', txUrl],
        ...['--token-file', join(dir, 'q.token'), '--prefix', '198.18.0.0/24', '--rise', '1'],
        ...['--interval', '100', '--metrics', `127.0.0.1:${ctlHttp}`],
      ],
    });
    await waitFor(
      'the prefix at BIRD from A',
      15_000,
      () => lab.routeAt('198.18.0.0/24').from === site.address,
    );
    const t0 = performance.now();
    lab.birdc('restart', 'site2'); // the session drops and comes back
    await waitFor('the routes sent again after the session came up', 15_000, async () =>
      /the BGP session with 127\.0\.0\.1 came up/.test(((await state()).reasons ?? []).join(' ')),
    );
    console.log(
      `process API: routes sent again ${(performance.now() - t0).toFixed(0)} ms after the session restart`,
    );
    await waitFor('the prefix at BIRD again', 5000, () => lab.routeAt('198.18.0.0/24').from === site.address);
    // ExaBGP stops: it ends the controller, whose last tick cannot reach it any more
    site.child.kill('SIGTERM');
    await new Promise((r) => site.child.once('exit', r));
    await waitFor('the controller gone', 10_000, async () => {
      try {
        await fetch(`http://127.0.0.1:${ctlHttp}/status`);
        return false;
      } catch {
        return true;
      }
    });
    await waitFor('the prefix gone from BIRD', 5000, () => !lab.routeAt('198.18.0.0/24').present);
  }, 90_000);
});
