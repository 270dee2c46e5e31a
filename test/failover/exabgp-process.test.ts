/**
 * The process-API client over in-memory streams standing for ExaBGP: commands go out as lines, each
 * waits for its own done/error in order, JSON events are told apart from acks, a session coming up is
 * reported, a silent ExaBGP times out, and the end of stdin fails what is still waiting.
 */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ExaBgpProcess } from '../../src/failover/exabgp-process.js';

function pair(timeoutMs = 500) {
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  const sent: string[] = [];
  stdout.setEncoding('utf8');
  stdout.on('data', (c: string) => sent.push(...c.split('\n').filter(Boolean)));
  return { api: new ExaBgpProcess(stdin, stdout, timeoutMs), stdin, sent };
}

/** Waits until `n` commands went out (ExaBGP answers a command only once it has it). */
async function sentCount(sent: string[], n: number): Promise<void> {
  while (sent.length < n) await new Promise((r) => setTimeout(r, 1));
}

const upEvent = (peer: string) =>
  `${JSON.stringify({ exabgp: '4.0.1', type: 'state', neighbor: { address: { local: '127.0.0.2', peer }, state: 'up' } })}\n`;

describe('ExaBgpProcess', () => {
  it('answers each command with its own ack, events in between', async () => {
    const { api, stdin, sent } = pair();
    const a = api.command('announce route 203.0.113.0/24 next-hop self');
    const b = api.command('withdraw route 198.51.100.0/24 next-hop self');
    const c = api.command('announce route 192.0.2.0/24 next-hop self');
    const events: unknown[] = [];
    api.onEvent((e) => events.push(e.type));
    await new Promise((r) => setImmediate(r));
    expect(sent).toEqual(['announce route 203.0.113.0/24 next-hop self']); // one at a time
    stdin.write(`{"type": "notification", "notification": "hello"}\ndo`);
    stdin.write('ne\n');
    await a;
    await sentCount(sent, 2);
    stdin.write('error\n');
    await expect(b).rejects.toMatchObject({ code: 'RWAN_ERR_EXABGP', details: { reason: 'error' } });
    await sentCount(sent, 3);
    stdin.write('done\n');
    await c;
    expect(sent).toHaveLength(3);
    expect(events).toEqual(['notification']);
  });

  it('reports each session coming up', async () => {
    const { api, stdin } = pair();
    const ups: string[] = [];
    api.neighborUp((p) => ups.push(p));
    stdin.write(upEvent('127.0.0.1'));
    stdin.write(
      `${JSON.stringify({ type: 'state', neighbor: { address: { peer: '127.0.0.1' }, state: 'down' } })}\n`,
    );
    stdin.write(upEvent('10.0.0.9'));
    await new Promise((r) => setImmediate(r));
    expect(ups).toEqual(['127.0.0.1', '10.0.0.9']);
  });

  it('times out when ExaBGP is slow; its late answer is not taken for the next command’s', async () => {
    const { api, stdin, sent } = pair(100);
    const t0 = performance.now();
    await expect(api.command('announce route 203.0.113.0/24 next-hop self')).rejects.toMatchObject({
      details: { reason: 'timeout' },
    });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(95);
    const next = api.command('withdraw route 203.0.113.0/24 next-hop self');
    await sentCount(sent, 2);
    stdin.write('error\n'); // the late answer to the first command
    stdin.write('done\n');
    await next;
  });

  it('fails what waits when ExaBGP closes stdin, and refuses commands after', async () => {
    const { api, stdin } = pair(5000);
    const waiting = api.command('announce route 203.0.113.0/24 next-hop self');
    stdin.end();
    await api.ended;
    await expect(waiting).rejects.toMatchObject({ details: { reason: 'shutdown' } });
    await expect(api.command('withdraw route 203.0.113.0/24 next-hop self')).rejects.toMatchObject({
      details: { reason: 'shutdown' },
    });
  });

  it('refuses a command that is not one printable line', async () => {
    const { api, sent } = pair();
    await expect(
      api.command('announce route 203.0.113.0/24\nwithdraw route 0.0.0.0/0'),
    ).rejects.toMatchObject({
      code: 'RWAN_ERR_INTERNAL',
    });
    expect(sent).toEqual([]);
  });
});
