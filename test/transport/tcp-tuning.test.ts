import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { setTcpCongestion, setTcpRtoMin, tcpUnsent } from '../../src/codec/hot-loops.js';
import { Channel } from '../../src/transport/channel.js';

const fdOf = (s: Socket) => (s as unknown as { _handle: { fd: number } })._handle.fd;

/** A connected pair on loopback: `fn(client, accepted)`, then both closed. */
async function withPair(fn: (c: Socket, a: Socket) => void | Promise<void>): Promise<void> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const c = connect((server.address() as { port: number }).port, '127.0.0.1');
  await once(c, 'connect');
  const [a] = await accepted;
  try {
    await fn(c, a);
  } finally {
    c.destroy();
    a.destroy();
    server.close();
  }
}

describe('setTcpRtoMin', () => {
  it.runIf(setTcpRtoMin !== undefined)(
    'sets the lower bound on a connected socket (or says the kernel is older than 6.15), refuses bad arguments',
    () =>
      withPair((c, a) => {
        const r = setTcpRtoMin?.(fdOf(c), 20_000);
        // 0, or ENOPROTOOPT (92) where the kernel has no TCP_RTO_MIN_US
        expect([0, -92]).toContain(r);
        expect(setTcpRtoMin?.(fdOf(a), 50_000)).toBe(r);
        expect(() => setTcpRtoMin?.(-1, 20_000)).toThrow(RangeError);
        expect(() => setTcpRtoMin?.(fdOf(c), 0)).toThrow(RangeError);
        // a descriptor that is not a socket
        expect(setTcpRtoMin?.(0, 20_000)).toBeLessThan(0);
      }),
  );
});

describe('setTcpCongestion', () => {
  it.runIf(setTcpCongestion !== undefined)(
    'sets a congestion control the kernel has, says ENOENT for one it has not, refuses bad arguments',
    () =>
      withPair((c) => {
        const available = readFileSync('/proc/sys/net/ipv4/tcp_available_congestion_control', 'utf8')
          .trim()
          .split(/\s+/);
        expect(available).toContain('reno'); // always built in
        expect(setTcpCongestion?.(fdOf(c), 'reno')).toBe(0);
        expect(setTcpCongestion?.(fdOf(c), 'no-such-cc')).toBe(-2);
        expect(() => setTcpCongestion?.(-1, 'reno')).toThrow(RangeError);
        expect(() => setTcpCongestion?.(fdOf(c), '')).toThrow(RangeError);
        expect(setTcpCongestion?.(0, 'reno')).toBeLessThan(0);
      }),
  );
});

describe('tcpUnsent and Channel.unsentBytes', () => {
  it.runIf(tcpUnsent !== undefined)(
    'count what the kernel holds unsent: none on an idle socket, some once the peer stops reading',
    () =>
      withPair(async (c, a) => {
        expect(tcpUnsent?.(fdOf(c))).toBe(0);
        const ch = new Channel(c, { name: 'test', heartbeatMs: 0, idleTimeoutMs: 0 });
        expect(ch.unsentBytes).toBe(0);
        a.pause();
        // the peer's receive buffer fills, then the sender's queue holds bytes it cannot send
        const block = Buffer.alloc(1 << 20);
        for (let i = 0; i < 64 && (tcpUnsent?.(fdOf(c)) ?? 0) === 0; i++) {
          c.write(block);
          await new Promise((r) => setTimeout(r, 20));
        }
        const kernel = tcpUnsent?.(fdOf(c)) ?? 0;
        expect(kernel).toBeGreaterThan(0);
        expect(ch.unsentBytes).toBeGreaterThanOrEqual(kernel);
        expect(() => tcpUnsent?.(-1)).toThrow(RangeError);
        expect(tcpUnsent?.(0)).toBeLessThan(0); // not a socket
      }),
  );
});
