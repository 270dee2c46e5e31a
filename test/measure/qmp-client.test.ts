/**
 * QmpClient: the happy path and QEMU's own errors against a real (paused) QEMU; a fake server on a
 * temp UNIX socket only for what QEMU never does (split replies, oversized lines, garbage, silence).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isRwanError } from '../../src/errors.js';
import { LineDecoder, QmpClient } from '../../src/measure/qmp-client.js';
import { type QemuGuest, startQemuGuest } from '../integration/qemu-guest.js';

const GREETING = '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": []}}\n';

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => err,
  );
}

describe('QmpClient against a real QEMU', () => {
  let guest: QemuGuest;
  let client: QmpClient;

  beforeAll(async () => {
    guest = await startQemuGuest({ paused: true, memoryMiB: 128 });
    client = await QmpClient.connect(guest.socketPath);
  }, 30_000);

  afterAll(async () => {
    client?.close();
    await guest?.stop();
  });

  it('reads the greeting and runs commands', async () => {
    expect(client.greeting.version?.qemu?.major).toBeGreaterThanOrEqual(7);
    const version = await client.execute<{ qemu: { major: number } }>('query-version');
    expect(version.qemu.major).toBe(client.greeting.version?.qemu?.major);
    expect(await client.execute('query-status')).toMatchObject({ running: false });
  });

  it('ignores the events that cont and stop emit', async () => {
    expect(await client.execute('cont')).toEqual({});
    expect(await client.execute('stop')).toEqual({});
    expect(await client.execute('query-status')).toMatchObject({ running: false, status: 'paused' });
  });

  it('maps an error reply to RWAN_ERR_QMP with class, desc and command', async () => {
    const err = await rejection(client.execute('no-such-command'));
    expect(isRwanError(err, 'RWAN_ERR_QMP')).toBe(true);
    expect((err as { details: unknown }).details).toMatchObject({
      class: 'CommandNotFound',
      command: 'no-such-command',
    });
    // the session is still usable
    expect(await client.execute('query-status')).toMatchObject({ running: false });
  });

  it('fails with RWAN_ERR_QMP (not a timeout) once QEMU has gone', async () => {
    await guest.stop();
    const err = await rejection(client.execute('query-status', undefined, { timeoutMs: 5000 }));
    expect(isRwanError(err, 'RWAN_ERR_QMP')).toBe(true);
  });
});

describe('QmpClient connection errors', () => {
  it('names the socket when it does not exist (RWAN_ERR_QMP)', async () => {
    const path = join(tmpdir(), 'rwan-missing', 'qmp.sock');
    const err = await rejection(QmpClient.connect(path));
    expect(isRwanError(err, 'RWAN_ERR_QMP')).toBe(true);
    expect((err as Error).message).toContain(path);
    expect((err as { details: { errno?: string } }).details.errno).toBe('ENOENT');
  });
});

/** A fake QMP server: `onLine` answers each command line the client sends. */
describe('QmpClient against a fake server (what QEMU never sends)', () => {
  let dir: string;
  let server: net.Server | undefined;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rwan-fakeqmp-'));
  });
  afterEach(async () => {
    await new Promise((r) => (server ? server.close(r) : r(undefined)));
    server = undefined;
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function serve(
    onConnect: (s: net.Socket) => void,
    onCommand?: (s: net.Socket, cmd: { execute: string; id: string }) => void,
  ): Promise<string> {
    const path = join(dir, `s${Math.random().toString(36).slice(2)}.sock`);
    server = net.createServer((s) => {
      s.on('error', () => undefined);
      let buf = '';
      s.on('data', (d) => {
        buf += d.toString();
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          const cmd = JSON.parse(buf.slice(0, nl));
          buf = buf.slice(nl + 1);
          if (cmd.execute === 'qmp_capabilities') s.write(`{"return": {}, "id": "${cmd.id}"}\n`);
          else onCommand?.(s, cmd);
        }
      });
      onConnect(s);
    });
    await new Promise<void>((r) => server?.listen(path, r));
    return path;
  }

  it('reassembles replies split into single bytes, and several replies in one chunk', async () => {
    const path = await serve(
      (s) => {
        const bytes = Buffer.from(GREETING);
        for (let i = 0; i < bytes.length; i++) s.write(bytes.subarray(i, i + 1));
      },
      (s, cmd) => {
        if (cmd.execute === 'two') {
          s.write(`{"event": "X"}\n{"return": {"n": 1}, "id": "${cmd.id}"}\n{"event": "Y", "data": {}}\n`);
        } else {
          const reply = Buffer.from(`{"return": {"n": "é"}, "id": "${cmd.id}"}\r\n`);
          for (let i = 0; i < reply.length; i++) s.write(reply.subarray(i, i + 1));
        }
      },
    );
    const client = await QmpClient.connect(path);
    expect(await Promise.all([client.execute('two'), client.execute('split')])).toEqual([
      { n: 1 },
      { n: 'é' },
    ]);
    client.close();
  });

  it('refuses a line over the cap with RWAN_ERR_QMP', async () => {
    const path = await serve(
      (s) => s.write(GREETING),
      (s) => s.write(`{"return": "${'x'.repeat(2000)}`),
    );
    const client = await QmpClient.connect(path, { maxLineBytes: 1000 });
    const err = await rejection(client.execute('big'));
    expect(isRwanError(err, 'RWAN_ERR_QMP')).toBe(true);
    expect((err as { details: unknown }).details).toEqual({ limitBytes: 1000 });
  });

  it('refuses garbage and a non-QMP greeting with RWAN_ERR_QMP', async () => {
    let path = await serve((s) => s.write('hello there\n'));
    expect(isRwanError(await rejection(QmpClient.connect(path)), 'RWAN_ERR_QMP')).toBe(true);
    await new Promise((r) => server?.close(r));
    path = await serve((s) => s.write('{"return": {}}\n'));
    expect(isRwanError(await rejection(QmpClient.connect(path)), 'RWAN_ERR_QMP')).toBe(true);
  });

  it('times out without a greeting or a reply (RWAN_ERR_QMP_TIMEOUT), dropping late replies', async () => {
    let path = await serve(() => undefined);
    const err = await rejection(QmpClient.connect(path, { timeoutMs: 200 }));
    expect(isRwanError(err, 'RWAN_ERR_QMP_TIMEOUT')).toBe(true);
    await new Promise((r) => server?.close(r));

    path = await serve(
      (s) => s.write(GREETING),
      (s, cmd) => {
        const reply = `{"return": "${cmd.execute}", "id": "${cmd.id}"}\n`;
        if (cmd.execute === 'slow') setTimeout(() => s.write(reply), 300);
        else setTimeout(() => s.write(reply), 400);
      },
    );
    const client = await QmpClient.connect(path);
    const slow = await rejection(client.execute('slow', undefined, { timeoutMs: 100 }));
    expect(isRwanError(slow, 'RWAN_ERR_QMP_TIMEOUT')).toBe(true);
    expect(await client.execute('next')).toBe('next');
    client.close();
  });
});

describe('LineDecoder', () => {
  const text = '{"a": 1}\n{"b": "ü"}\r\n\n{"c": [1, 2]}\n{"d"';

  it('gives the same lines for the input split at every offset', () => {
    const bytes = Buffer.from(text);
    for (let cut = 0; cut <= bytes.length; cut++) {
      const d = new LineDecoder();
      const lines = [...d.write(bytes.subarray(0, cut)), ...d.write(bytes.subarray(cut))];
      expect(lines).toEqual(['{"a": 1}', '{"b": "ü"}\r', '', '{"c": [1, 2]}']);
      expect(d.bufferedBytes).toBe(4);
    }
  });

  it('throws RWAN_ERR_QMP before buffering more than the cap, split or not', () => {
    expect(() => new LineDecoder(8).write(Buffer.from('123456789\n'))).toThrow(
      expect.objectContaining({ code: 'RWAN_ERR_QMP' }),
    );
    const d = new LineDecoder(8);
    d.write(Buffer.from('12345'));
    expect(() => d.write(Buffer.from('6789'))).toThrow(expect.objectContaining({ code: 'RWAN_ERR_QMP' }));
    expect(new LineDecoder(8).write(Buffer.from('12345678\n'))).toEqual(['12345678']);
  });
});
