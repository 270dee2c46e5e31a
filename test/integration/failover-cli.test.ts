/**
 * `remus-failover announce | withdraw | status` against real ExaBGP and BIRD (bgp-lab.ts): routes
 * from flags and from a file reach BIRD with their attributes and go away; an injection attempt in
 * any attribute is refused before anything is written (ExaBGP's adj-rib-out stays empty); a missing
 * pipe or a stopped ExaBGP is a clear error with its exit status.
 */
import { closeSync, constants, openSync, readFileSync, readSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/failover.js';
import { type BgpLab, haveBgpTools, type Speaker, startBgpLab } from './bgp-lab.js';

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { out: (t) => (out += t), err: (t) => (err += t) });
  return { code, out, err };
}

async function waitFor(pred: () => boolean, ms = 5000): Promise<void> {
  const t0 = performance.now();
  while (!pred()) {
    if (performance.now() - t0 > ms) throw new Error('timed out');
    await sleep(5);
  }
}

describe('remus-failover CLI', () => {
  let lab: BgpLab;
  let site: Speaker;
  let pipe: string[];

  beforeAll(async () => {
    expect(haveBgpTools(), 'bird2 and exabgp are needed (tools/system-deps.sh)').toBe(true);
    lab = await startBgpLab();
    site = await lab.speaker(3);
    pipe = ['--pipe-in', site.pipes.in, '--pipe-out', site.pipes.out];
  }, 60_000);
  afterAll(async () => {
    await lab?.stop();
  });

  it('announces from flags, shows it in status, withdraws', async () => {
    const a = await run(
      'announce',
      ...pipe,
      '--prefix',
      '203.0.113.0/24',
      '--med',
      '50',
      '--as-path',
      '65003,65003',
      '--json',
    );
    expect(a.code, a.err).toBe(0);
    expect(JSON.parse(a.out)).toMatchObject({
      exabgp: expect.stringMatching(/^exabgp 4/),
      sent: [{ command: expect.any(String) }],
    });
    await waitFor(() => lab.routeAt('203.0.113.0/24').from === site.address);
    const all = lab.birdc('show', 'route', '203.0.113.0/24', 'all');
    expect(all).toMatch(/BGP.med: 50/);
    expect(all).toMatch(/BGP.as_path: 65003 65003\n/); // as given: ExaBGP sends the AS_PATH it is told
    const s = await run('status', ...pipe, '--json');
    expect(s.code, s.err).toBe(0);
    expect(JSON.parse(s.out).adjRibOut.join('\n')).toMatch(/203\.0\.113\.0\/24/);
    const w = await run('withdraw', ...pipe, '--prefix', '203.0.113.0/24');
    expect(w.code, w.err).toBe(0);
    expect(w.out).toMatch(/^done \(.* ms\): withdraw route 203\.0\.113\.0\/24 next-hop self\n$/);
    await waitFor(() => !lab.routeAt('203.0.113.0/24').present);
  });

  it('announces every route of a file', async () => {
    const file = join(lab.dir, 'routes.json');
    writeFileSync(
      file,
      JSON.stringify([
        { prefix: '198.51.100.0/25', communities: ['65003:7'] },
        { prefix: '198.51.100.128/25', med: 10 },
      ]),
    );
    expect((await run('announce', ...pipe, '--routes', file)).code).toBe(0);
    await waitFor(() => lab.routeAt('198.51.100.0/25').present && lab.routeAt('198.51.100.128/25').present);
    expect((await run('withdraw', ...pipe, '--routes', file)).code).toBe(0);
    await waitFor(() => !lab.routeAt('198.51.100.0/25').present && !lab.routeAt('198.51.100.128/25').present);
  });

  it('refuses injection attempts in every attribute before writing anything', async () => {
    // a pipe this test reads itself: whatever the CLI would write into it is seen here
    const spy = lab.fifos(`rwan-cli-spy-${process.pid}`);
    const reader = openSync(spy.in, constants.O_RDONLY | constants.O_NONBLOCK);
    const written = () => {
      const b = Buffer.alloc(4096);
      try {
        return readSync(reader, b, 0, b.length, null);
      } catch {
        return 0; // EAGAIN: nothing
      }
    };
    const evil = '\nannounce route 0.0.0.0/0 next-hop self';
    const attempts: string[][] = [
      ['--prefix', `203.0.113.0/24${evil}`],
      ['--prefix', '203.0.113.0/24', '--next-hop', `self${evil}`],
      ['--prefix', '203.0.113.0/24', '--med', `1${evil}`],
      ['--prefix', '203.0.113.0/24', '--local-pref', `1${evil}`],
      ['--prefix', '203.0.113.0/24', '--as-path', `65003${evil}`],
      ['--prefix', '203.0.113.0/24', '--community', `65003:1${evil}`],
      ['--prefix', '203.0.113.0/24', '--neighbor', `127.0.0.1${evil}`],
      ['--prefix', '203.0.113.0/24', '--med', '1 community [ 65003:666 ]'],
    ];
    const file = join(lab.dir, 'evil.json');
    writeFileSync(
      file,
      JSON.stringify([{ prefix: '192.0.2.0/24' }, { prefix: '192.0.2.128/25', communities: [`1:1${evil}`] }]),
    );
    try {
      for (const a of [...attempts, ['--routes', file]]) {
        for (const target of [pipe, ['--pipe-in', spy.in, '--pipe-out', spy.out]]) {
          const r = await run('announce', ...target, ...a);
          expect(r.code, a.join(' ')).toBe(2);
          expect(r.err).toMatch(/RWAN_ERR_ROUTE/);
        }
        expect(written(), a.join(' ')).toBe(0); // not a byte: not even the version handshake
      }
    } finally {
      closeSync(reader);
    }
    // and the real speaker announced none of it (the file's first, valid route included)
    expect(lab.routeAt('0.0.0.0/0').present).toBe(false);
    expect(lab.routeAt('192.0.2.0/24').present).toBe(false);
  });

  it('says what is wrong when ExaBGP cannot be reached', async () => {
    const missing = await run(
      'announce',
      '--pipe',
      `rwan-missing-${process.pid}`,
      '--prefix',
      '203.0.113.0/24',
    );
    expect(missing.code).toBe(11);
    expect(missing.err).toMatch(/RWAN_ERR_EXABGP: no ExaBGP pipe named/);
    const idle = lab.fifos(`rwan-cli-idle-${process.pid}`);
    const t0 = performance.now();
    const down = await run(
      'withdraw',
      '--pipe-in',
      idle.in,
      '--pipe-out',
      idle.out,
      '--prefix',
      '203.0.113.0/24',
      '--json',
    );
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(down.code).toBe(11);
    expect(JSON.parse(down.err).error).toMatchObject({
      code: 'RWAN_ERR_EXABGP',
      details: { reason: 'not-running' },
    });
    const usage = await run('announce', '--pipe-in', idle.in, '--prefix', '203.0.113.0/24');
    expect(usage.code).toBe(2);
    expect(usage.err).toMatch(/--pipe-in and --pipe-out go together/);
  });
});

describe('remus-failover exabgp-process (run by ExaBGP)', () => {
  let lab: BgpLab;

  beforeAll(async () => {
    expect(haveBgpTools(), 'bird2 and exabgp are needed (tools/system-deps.sh)').toBe(true);
    lab = await startBgpLab();
  }, 60_000);
  afterAll(async () => {
    await lab?.stop();
  });

  it('announces when the session comes up, and again each time it comes back', async () => {
    const cli = join(import.meta.dirname, '..', '..', 'dist', 'src', 'cli', 'failover.js');
    const site = await lab.speaker(4, {
      process: [process.execPath, cli, 'exabgp-process', '--prefix', '203.0.113.0/24', '--med', '7'],
    });
    await waitFor(() => lab.routeAt('203.0.113.0/24').from === site.address);
    expect(lab.birdc('show', 'route', '203.0.113.0/24', 'all')).toMatch(/BGP.med: 7/);
    const announced = () =>
      readFileSync(join(lab.dir, 'exabgp4.err'), 'utf8')
        .split('\n')
        .filter((l) => l.includes('"announce done"')).length;
    expect(announced()).toBe(1);
    lab.birdc('restart', 'site4'); // the session drops and comes back
    await waitFor(() => announced() === 2, 15_000);
    await waitFor(() => lab.routeAt('203.0.113.0/24').present);
  }, 30_000);
});
