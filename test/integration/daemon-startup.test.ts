/**
 * A daemon that cannot open its endpoint (--metrics) fails with RWAN_ERR_CONNECT and, until it has
 * exited, accepts nothing: a receiver (xen-receive too) no primary, a sender no client on its output-commit proxy.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { assertFreshBuild, freePorts, type Proc, Procs, WAN } from './daemon-harness.js';

/** Connects to `port` every 10 ms until `proc` exits; how many connections were accepted. */
async function acceptedUntilExit(proc: Proc, port: number): Promise<number> {
  let accepted = 0;
  while (proc.alive) {
    accepted += await new Promise<number>((resolve) => {
      const c = connect(port, '127.0.0.1');
      c.once('connect', () => {
        c.destroy();
        resolve(1);
      });
      c.once('error', () => resolve(0));
    });
    await new Promise((r) => setTimeout(r, 10));
  }
  return accepted;
}

describe('a daemon that cannot open an address serves nothing', () => {
  let dir: string;
  let procs: Procs;
  let taken: Server;
  let takenPort: number;
  beforeEach(async () => {
    assertFreshBuild();
    dir = mkdtempSync(join(tmpdir(), 'rwan-startup-'));
    procs = new Procs(dir);
    taken = createServer((s) => s.destroy());
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
    takenPort = (taken.address() as { port: number }).port;
  });
  afterEach(async () => {
    await procs.killAll();
    await new Promise((r) => taken.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  /** Each daemon's arguments, given the port that must not accept (`open`) and a free port where nothing listens (`other`). */
  const daemons: Array<[string, string, (open: number, other: number, dir: string) => string[]]> = [
    [
      'receive',
      'the listener',
      (open, _, d) => ['receive', '--listen', `127.0.0.1:${open}`, '--store', join(d, 'store')],
    ],
    [
      'xen-receive',
      'the listener',
      (open) => ['xen-receive', '--listen', `127.0.0.1:${open}`, '--receive-command', 'cat >/dev/null'],
    ],
    [
      'send',
      'the output-commit proxy',
      (open, other, d) => {
        writeFileSync(join(d, 'image'), Buffer.alloc(16 * 4096));
        const proxy = `127.0.0.1:${open}=127.0.0.1:${other}`;
        return ['send', '--connect', `127.0.0.1:${other}`, '--image', join(d, 'image'), '--proxy', proxy];
      },
    ],
  ];
  it.each(daemons)(
    '%s: its endpoint port taken, %s never accepts',
    async (name, _, args) => {
      const [open, other] = (await freePorts(2)) as [number, number];
      const daemon = procs.start(name, [
        WAN,
        ...args(open, other, dir),
        '--insecure',
        '--metrics',
        `127.0.0.1:${takenPort}`,
      ]);
      expect(await acceptedUntilExit(daemon, open), procs.report()).toBe(0);
      expect((await daemon.exited).code, procs.report()).toBe(8);
      expect(daemon.log()).toMatch(/RWAN_ERR_CONNECT: metrics 127\.0\.0\.1:\d+: EADDRINUSE/);
    },
    30_000,
  );
});
