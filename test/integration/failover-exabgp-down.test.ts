/**
 * The controller (runner.ts) while ExaBGP is missing, stopped, restarted or refusing: every tick
 * reports the failure with ExaBGP's reason and tries again; nothing hangs; once ExaBGP answers, the
 * routes reach BIRD, and an ExaBGP that restarted (and so forgot them) gets them again. Real ExaBGP,
 * BIRD and replication daemons (a primary site: its sender replicating to a receiver).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControllerConfig } from '../../src/failover/controller.js';
import { observeDaemon } from '../../src/failover/daemon-view.js';
import { ExaBgpPipe, ReopeningPipe } from '../../src/failover/exabgp-pipe.js';
import { parseRoute } from '../../src/failover/routes.js';
import { Runner } from '../../src/failover/runner.js';
import { type BgpLab, haveBgpTools, startBgpLab } from './bgp-lab.js';
import {
  assertFreshBuild,
  freePorts,
  Procs,
  startPlainReceiver,
  startPlainSender,
  waitFor,
} from './daemon-harness.js';

const dir = mkdtempSync(join(tmpdir(), 'rwan-failover-down-'));
const procs = new Procs(dir);
let lab: BgpLab;
let txUrl: string;

beforeAll(async () => {
  expect(haveBgpTools(), 'bird2 and exabgp are needed (tools/system-deps.sh)').toBe(true);
  assertFreshBuild();
  lab = await startBgpLab();
  const { port } = await startPlainReceiver(procs, dir, 'd');
  const { txUrl: url } = await startPlainSender(procs, dir, 'd', port);
  txUrl = url;
  // the primary's controller announces once its backup answers (it starts fenced)
  await waitFor('the pair replicating', 20_000, async () => (await observeDaemon(txUrl, 1000)).peerUp);
}, 60_000);
afterAll(async () => {
  await procs.killAll();
  await lab?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const primary: ControllerConfig = {
  role: 'primary',
  rise: 1,
  fall: 3,
  med: { up: 100, down: 1000, disabled: 500 },
  withdrawOnDown: true,
  fenceAfterMs: 60_000,
};

type Tick = Awaited<ReturnType<Runner['tick']>>;

describe('remus-failover controller when ExaBGP is not there', () => {
  it('missing pipes, not a FIFO, ExaBGP stopped: each tick reports and retries; then announces; re-sends after a restart', async () => {
    const n = 2;
    const name = lab.pipeName(n);
    const paths = { in: join('/run/exabgp', `${name}.in`), out: join('/run/exabgp', `${name}.out`) };
    const resyncs: string[] = [];
    const runner = await Runner.create({
      cfg: primary,
      site: 'a',
      routes: [parseRoute({ prefix: '203.0.113.0/24' })],
      exabgp: new ReopeningPipe(
        () => ExaBgpPipe.open({ ...paths, timeoutMs: 500 }),
        () => {
          resyncs.push('reopened');
          runner.resync('ExaBGP answers again');
        },
      ),
      daemonUrl: txUrl,
      witnessUrl: null,
      tokenFile: join(dir, 'a.token'),
      timeoutMs: 1000,
      refreshMs: 400,
      log: () => undefined,
    });
    const failing = async (reason: string) => {
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now();
        const d = await runner.tick();
        expect(performance.now() - t0).toBeLessThan(900); // no hang: well under the command timeout
        expect(d.failed).toBe(true);
        expect(d.reasons.join(' ')).toMatch(new RegExp(`ExaBGP.*${reason}.*retrying at the next tick`));
        expect(d.actions.filter((a) => a.kind === 'announce')).toEqual([]);
      }
    };
    // 1. no pipes at all
    await failing(`ExaBGP pipe ${paths.in} does not exist`);
    // 2. a regular file where the command pipe should be
    writeFileSync(paths.in, '');
    writeFileSync(paths.out, '');
    await failing('is not a named pipe');
    rmSync(paths.in);
    rmSync(paths.out);
    // 3. the pipes, but no ExaBGP reading them
    lab.fifos(name);
    await failing('ExaBGP is not reading');
    expect(lab.routeAt('203.0.113.0/24').present).toBe(false);
    // 4. ExaBGP starts: the next tick announces (the failures changed nothing that was sent)
    const site = await lab.speaker(n);
    const ok: Tick = await runner.tick();
    expect(ok.failed).toBe(false);
    expect(ok.actions).toContainEqual({ kind: 'announce', med: 100 });
    await waitFor('the prefix at BIRD', 5000, () => lab.routeAt('203.0.113.0/24').from === site.address);
    expect(resyncs).toEqual(['reopened']);
    // 5. ExaBGP restarts between two ticks (same pipes: the client cannot tell); BIRD loses the
    // route with the session, and the refresh sends it again to the new ExaBGP
    site.child.kill('SIGKILL');
    await new Promise((r) => site.child.once('exit', r));
    await waitFor('the prefix gone from BIRD', 5000, () => !lab.routeAt('203.0.113.0/24').present);
    const again = await lab.speaker(n);
    let refreshed: Tick | undefined;
    for (let i = 0; i < 20 && refreshed === undefined; i++) {
      const d = await runner.tick();
      if (d.actions.some((a) => a.kind === 'announce') && !d.failed) refreshed = d;
      else await sleep(100);
    }
    expect(refreshed?.reasons.join(' ')).toMatch(/sending the routes again: nothing sent for 400 ms/);
    await waitFor(
      'the prefix back at BIRD',
      5000,
      () => lab.routeAt('203.0.113.0/24').from === again.address,
    );
    expect(runner.state).toMatchObject({
      authority: 'active',
      phase: 'UP',
      advertised: { kind: 'announced' },
    });
  }, 90_000);

  it('ExaBGP answering error: reported each tick, retried, nothing announced', async () => {
    const site = await lab.speaker(3);
    const runner = await Runner.create({
      cfg: primary,
      site: 'a',
      // a neighbor this ExaBGP does not have: it answers `error`
      routes: [parseRoute({ prefix: '198.51.100.0/24', neighbors: ['127.0.0.99'] })],
      exabgp: new ReopeningPipe(() => ExaBgpPipe.open({ ...site.pipes, timeoutMs: 1000 })),
      daemonUrl: txUrl,
      witnessUrl: null,
      tokenFile: join(dir, 'e.token'),
      timeoutMs: 1000,
      log: () => undefined,
    });
    for (let i = 0; i < 3; i++) {
      const d = await runner.tick();
      expect(d.failed).toBe(true);
      expect(d.reasons.join(' ')).toMatch(
        /ExaBGP answered "error" to: neighbor 127.0.0.99 announce.*retrying at the next tick/,
      );
    }
    expect(runner.state.advertised).toEqual({ kind: 'none' });
    expect(lab.routeAt('198.51.100.0/24').present).toBe(false);
  }, 60_000);

  it('remus-failover run with no ExaBGP: keeps running, reports every failed tick, counts them; exits 0 on SIGTERM', async () => {
    const cli = join(import.meta.dirname, '..', '..', 'dist', 'src', 'cli', 'failover.js');
    const [http] = (await freePorts(1)) as [number];
    const ctl = procs.start('controller-no-exabgp', [
      cli,
      'run',
      '--role',
      'primary',
      '--daemon',
      txUrl,
      '--token-file',
      join(dir, 'n.token'),
      '--pipe',
      'no-such-exabgp',
      '--prefix',
      '192.0.2.0/24',
      '--rise',
      '1',
      '--interval',
      '100',
      '--metrics',
      `127.0.0.1:${http}`,
    ]);
    await waitFor(
      'failed decisions counted',
      10_000,
      async () => {
        try {
          const text = await (await fetch(`http://127.0.0.1:${http}/metrics`)).text();
          return Number(/remus_failover_failed_decisions_total (\d+)/.exec(text)?.[1]) >= 3;
        } catch {
          return false;
        }
      },
      () => ctl.tail(),
    );
    expect(ctl.alive).toBe(true);
    expect(ctl.tail()).toMatch(
      /"failed":true.*no ExaBGP pipe named no-such-exabgp.*retrying at the next tick/,
    );
    ctl.signal('SIGTERM');
    expect(await ctl.exited).toMatchObject({ code: 0 });
  }, 60_000);
});
