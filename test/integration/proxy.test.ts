/**
 * `remus-wan send --proxy`: a real sender and receiver, an echo service behind the proxy. Answers
 * reach the client only once the backup acknowledges the epoch captured after them: with the
 * receiver stopped (SIGSTOP) nothing comes back, and everything does, in order, once it runs again.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import {
  assertFreshBuild,
  freePorts,
  Procs,
  startPlainReceiver,
  status,
  WAN,
  waitFor,
} from './daemon-harness.js';

const dir = mkdtempSync(join(tmpdir(), 'rwan-proxy-'));
const procs = new Procs(dir);
let echo: Server | undefined;
afterAll(async () => {
  await procs.killAll();
  echo?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('output-commit proxy', () => {
  it('holds the service’s answers until the backup acknowledges, releases them in order', async () => {
    assertFreshBuild();
    // the service: echoes, and closes after "bye"
    echo = createServer((c) =>
      c.on('data', (d) => {
        c.write(d);
        if (d.toString().includes('bye')) c.end();
      }),
    );
    await new Promise<void>((r) => echo?.listen(0, '127.0.0.1', () => r()));
    const servicePort = (echo.address() as { port: number }).port;
    const { receiver, port } = await startPlainReceiver(procs, dir, 'p');
    const [proxyPort, txPort] = (await freePorts(2)) as [number, number];
    const image = join(dir, 'p.img');
    writeFileSync(image, Buffer.alloc(64 * 4096, 1));
    const sender = procs.start('p-sender', [
      WAN,
      ...['send', '--connect', `127.0.0.1:${port}`, '--image', image, '--insecure', '--epoch', '50ms'],
      ...['--metrics', `127.0.0.1:${txPort}`, '--proxy', `127.0.0.1:${proxyPort}=127.0.0.1:${servicePort}`],
    ]);
    await waitFor(
      'replicating',
      20_000,
      async () => (await status<{ state: string }>(txPort))?.state === 'replicating',
      () => sender.tail(),
    );

    const client: Socket = connect(proxyPort, '127.0.0.1');
    let got = '';
    let ended = false;
    client.on('data', (d) => (got += d));
    client.on('end', () => (ended = true));
    await new Promise((r) => client.once('connect', r));
    client.write('one;');
    await waitFor('the first answer', 5000, () => got === 'one;');

    receiver.signal('SIGSTOP'); // the backup acknowledges nothing now
    try {
      client.write('two;');
      await sleep(800);
      expect(got).toBe('one;'); // held: the echo came back from the service, not to the client
      const st = await status<{ proxies: Array<{ heldBytes: number }> }>(txPort);
      expect(st?.proxies[0]?.heldBytes).toBe(4);
      client.write('bye');
      await sleep(300);
      expect(got).toBe('one;');
      expect(ended).toBe(false); // the service's close is output too
    } finally {
      receiver.signal('SIGCONT');
    }
    await waitFor('the held answers', 10_000, () => got === 'one;two;bye' && ended);
    client.destroy();
  }, 60_000);
});
