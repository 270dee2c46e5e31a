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

  it('receive: its endpoint port taken, the listener never accepts', async () => {
    const [port] = (await freePorts(1)) as [number];
    const rx = procs.start('receiver', [
      WAN,
      ...['receive', '--insecure', '--listen', `127.0.0.1:${port}`, '--store', join(dir, 'store')],
      ...['--metrics', `127.0.0.1:${takenPort}`],
    ]);
    expect(await acceptedUntilExit(rx, port), procs.report()).toBe(0);
    expect((await rx.exited).code, procs.report()).toBe(8);
    expect(rx.log()).toMatch(/RWAN_ERR_CONNECT: metrics 127\.0\.0\.1:\d+: EADDRINUSE/);
  }, 30_000);

  it('xen-receive: its endpoint port taken, the listener never accepts', async () => {
    const [port] = (await freePorts(1)) as [number];
    const rx = procs.start('xen-receiver', [
      WAN,
      ...[
        'xen-receive',
        '--insecure',
        '--listen',
        `127.0.0.1:${port}`,
        '--receive-command',
        'cat >/dev/null',
      ],
      ...['--metrics', `127.0.0.1:${takenPort}`],
    ]);
    expect(await acceptedUntilExit(rx, port), procs.report()).toBe(0);
    expect((await rx.exited).code, procs.report()).toBe(8);
    expect(rx.log()).toMatch(/RWAN_ERR_CONNECT: metrics 127\.0\.0\.1:\d+: EADDRINUSE/);
  }, 30_000);

  it('send: its endpoint port taken, the proxy never accepts', async () => {
    const image = join(dir, 'image');
    writeFileSync(image, Buffer.alloc(16 * 4096));
    const [rxPort, proxyPort, servicePort] = (await freePorts(3)) as [number, number, number];
    const tx = procs.start('sender', [
      WAN,
      ...['send', '--insecure', '--connect', `127.0.0.1:${rxPort}`, '--image', image],
      ...[
        '--proxy',
        `127.0.0.1:${proxyPort}=127.0.0.1:${servicePort}`,
        '--metrics',
        `127.0.0.1:${takenPort}`,
      ],
    ]);
    expect(await acceptedUntilExit(tx, proxyPort), procs.report()).toBe(0);
    expect((await tx.exited).code, procs.report()).toBe(8);
    expect(tx.log()).toMatch(/RWAN_ERR_CONNECT: metrics 127\.0\.0\.1:\d+: EADDRINUSE/);
  }, 30_000);
});
