import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { AckFlags, type Frame, FrameType } from '../../src/protocol/frames.js';
import { Channel, sendDurableAck } from '../../src/transport/channel.js';

const options = { name: 't', heartbeatMs: 0, idleTimeoutMs: 0 };
const servers: Server[] = [];
const sockets: Socket[] = [];

afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const s of servers.splice(0)) s.close();
});

/** Two channels over a loopback TCP connection: [this side, the peer]. */
async function pair(): Promise<[Channel, Channel]> {
  const server = createServer();
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const a = connect(port, '127.0.0.1');
  await once(a, 'connect');
  const [b] = await accepted;
  sockets.push(a, b);
  return [new Channel(b, options), new Channel(a, options)];
}

describe('sendDurableAck', () => {
  it('sends the durable ACK on every open channel and skips closed and missing ones', async () => {
    const [a1, p1] = await pair();
    const [a2, p2] = await pair();
    const [a3, p3] = await pair();
    a3.close(undefined);
    const got: Array<[number, Frame]> = [];
    p1.on('frame', (f: Frame) => got.push([1, f]));
    p2.on('frame', (f: Frame) => got.push([2, f]));
    p3.on('frame', (f: Frame) => got.push([3, f]));
    sendDurableAck([a1, undefined, a2, a3], 41);
    for (let i = 0; i < 100 && got.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 30));
    expect(got.map(([c]) => c).sort()).toEqual([1, 2]);
    for (const [, f] of got) {
      expect(f.type).toBe(FrameType.ACK);
      if (f.type === FrameType.ACK) {
        expect(f.epoch).toBe(41);
        expect(f.flags & AckFlags.DURABLE).toBe(AckFlags.DURABLE);
      }
    }
    for (const c of [a1, a2, p1, p2, p3]) c.close(undefined);
  });
});
