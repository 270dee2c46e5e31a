import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { setTcpRtoMin } from '../../src/codec/hot-loops.js';

const fdOf = (s: Socket) => (s as unknown as { _handle: { fd: number } })._handle.fd;

describe('setTcpRtoMin', () => {
  it.runIf(setTcpRtoMin !== undefined)(
    'sets the lower bound on a connected socket (or says the kernel is older than 6.15), refuses bad arguments',
    async () => {
      const server = createServer();
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const accepted = once(server, 'connection') as Promise<[Socket]>;
      const c = connect((server.address() as { port: number }).port, '127.0.0.1');
      await once(c, 'connect');
      const [a] = await accepted;
      try {
        const r = setTcpRtoMin?.(fdOf(c), 20_000);
        // 0, or ENOPROTOOPT (92) where the kernel has no TCP_RTO_MIN_US
        expect([0, -92]).toContain(r);
        expect(setTcpRtoMin?.(fdOf(a), 50_000)).toBe(r);
        expect(() => setTcpRtoMin?.(-1, 20_000)).toThrow(RangeError);
        expect(() => setTcpRtoMin?.(fdOf(c), 0)).toThrow(RangeError);
        // a descriptor that is not a socket
        expect(setTcpRtoMin?.(0, 20_000)).toBeLessThan(0);
      } finally {
        c.destroy();
        a.destroy();
        server.close();
      }
    },
  );
});
