/**
 * The ExaBGP pipe client against the real thing: BIRD 2 and ExaBGP 4.2 started by the test
 * (bgp-lab.ts). A missing pipe, a path that is not a FIFO, a FIFO ExaBGP does not read, a reader
 * that never answers: each a clear error, at once or at the timeout, never a hang. With ExaBGP up,
 * an announcement reaches BIRD and a withdrawal removes it, ExaBGP's `error` is reported, and
 * answers left in the pipe by an earlier writer are not taken for this client's.
 */
import { closeSync, constants, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExaBgpPipe, findPipes } from '../../src/failover/exabgp-pipe.js';
import { announceCommand, parseRoute, withdrawCommand } from '../../src/failover/routes.js';
import { type BgpLab, haveBgpTools, type Speaker, startBgpLab } from './bgp-lab.js';

/** The RwanError's reason, or the error itself when it is not one. */
async function reasonOf(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    const err = e as { code?: string; details?: { reason?: string } };
    return err.code === 'RWAN_ERR_EXABGP' ? err.details?.reason : e;
  }
  return 'no error';
}

/** Polls BIRD until `pred` holds for `prefix`, up to `ms`; returns the time it took, ms. */
async function until(
  lab: BgpLab,
  prefix: string,
  pred: (r: ReturnType<BgpLab['routeAt']>) => boolean,
  ms = 5000,
) {
  const t0 = performance.now();
  while (!pred(lab.routeAt(prefix))) {
    if (performance.now() - t0 > ms) throw new Error(`BIRD: ${prefix} not as expected within ${ms} ms`);
    await sleep(2);
  }
  return performance.now() - t0;
}

describe('ExaBgpPipe', () => {
  let lab: BgpLab;
  let site: Speaker;

  beforeAll(async () => {
    expect(
      haveBgpTools(),
      'bird2 and exabgp are needed: tools/system-deps.sh installs them (npm test runs it)',
    ).toBe(true);
    lab = await startBgpLab();
    site = await lab.speaker(2);
  }, 60_000);
  afterAll(async () => {
    await lab?.stop();
  });

  it('refuses a missing pipe, a path that is not a FIFO, and a FIFO ExaBGP does not read, at once', async () => {
    const t0 = performance.now();
    expect(
      await reasonOf(ExaBgpPipe.open({ in: join(lab.dir, 'none.in'), out: join(lab.dir, 'none.out') })),
    ).toBe('missing');
    writeFileSync(join(lab.dir, 'plain.in'), '');
    writeFileSync(join(lab.dir, 'plain.out'), '');
    expect(
      await reasonOf(ExaBgpPipe.open({ in: join(lab.dir, 'plain.in'), out: join(lab.dir, 'plain.out') })),
    ).toBe('not-fifo');
    const idle = lab.fifos(`rwan-idle-${process.pid}`);
    expect(await reasonOf(ExaBgpPipe.open(idle))).toBe('not-running');
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  it('times out on a reader that never answers', async () => {
    const mute = lab.fifos(`rwan-mute-${process.pid}`);
    // something reads the commands (so the pipe opens) but nothing ever answers
    const reader = openSync(mute.in, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      const t0 = performance.now();
      expect(await reasonOf(ExaBgpPipe.open({ ...mute, timeoutMs: 300 }))).toBe('timeout');
      const took = performance.now() - t0;
      expect(took).toBeGreaterThanOrEqual(300);
      expect(took).toBeLessThan(1500);
    } finally {
      closeSync(reader);
    }
  });

  it('finds the pipes where ExaBGP looks for them', () => {
    const name = site.pipes.in.split('/').pop()?.replace(/\.in$/, '') ?? '';
    expect(findPipes(name)).toEqual(site.pipes);
    expect(findPipes(`${name}-nowhere`)).toBeUndefined();
  });

  it('announces to BIRD and withdraws; reports ExaBGP’s error; measures the time to BIRD', async () => {
    const pipe = await ExaBgpPipe.open(site.pipes);
    try {
      expect(pipe.version).toMatch(/^exabgp 4\./);
      const r = parseRoute({ prefix: '203.0.113.0/24', med: 100, communities: ['65002:1'] });
      const t0 = performance.now();
      await pipe.command(announceCommand(r));
      const acked = performance.now() - t0;
      const visible =
        acked + (await until(lab, '203.0.113.0/24', (x) => x.present && x.from === site.address));
      const all = lab.birdc('show', 'route', '203.0.113.0/24', 'all');
      expect(all).toMatch(/BGP.med: 100/);
      expect(all).toMatch(/\(65002,1\)/);
      await pipe.command(withdrawCommand(r));
      const gone = await until(lab, '203.0.113.0/24', (x) => !x.present);
      console.log(
        `ExaBGP pipe: announce acked in ${acked.toFixed(1)} ms, at BIRD in ${visible.toFixed(1)} ms; withdrawn in ${gone.toFixed(1)} ms`,
      );
      // a command ExaBGP cannot carry out: its "error", and the client goes on working
      const elsewhere = parseRoute({ prefix: '198.51.100.0/24', neighbors: ['10.9.9.9'] });
      expect(await reasonOf(pipe.command(announceCommand(elsewhere)))).toBe('error');
      await pipe.command(withdrawCommand(r));
    } finally {
      pipe.close();
    }
  });

  it('drops answers an earlier writer left in the pipe', async () => {
    // commands written with nobody reading the answers: ExaBGP queues them for the next reader
    const w = openSync(site.pipes.in, constants.O_WRONLY | constants.O_NONBLOCK);
    writeSync(w, 'announce route 198.51.100.0/24 next-hop self\nnot a command\n');
    closeSync(w);
    await until(lab, '198.51.100.0/24', (x) => x.present);
    const pipe = await ExaBgpPipe.open(site.pipes);
    try {
      // were a stale "error" taken for this answer, this would reject
      await pipe.command(withdrawCommand(parseRoute({ prefix: '198.51.100.0/24' })));
      await until(lab, '198.51.100.0/24', (x) => !x.present);
      // and were a stale "done" taken for it, the next error would be missed
      expect(await reasonOf(pipe.command('announce route 192.0.2.0/24 next-hop self med bogus'))).toBe(
        'error',
      );
    } finally {
      pipe.close();
    }
  });
});
