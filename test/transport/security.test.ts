/**
 * The secured connection layer over loopback with real node:tls and certificates made by
 * makeCertificates: mutual TLS, peerNames, refusals on both ends, handshake deadlines, PSK, insecure.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect as netConnect, createServer as netCreateServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ConnectionOptions, type TLSSocket, connect as tlsConnect } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isRwanError, type RwanError } from '../../src/errors.js';
import { makeCertificates } from '../../src/transport/certs.js';
import {
  connect,
  type Listener,
  type LoadedSecurity,
  listen,
  loadSecurity,
  type PeerInfo,
  PSK_CIPHERS,
  type Security,
  type TlsSecurity,
  type TransportSocket,
} from '../../src/transport/security.js';

let dir: string;
let ours: string;
let theirs: string;
let bundle: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'remus-wan-security-'));
  ours = join(dir, 'ours');
  theirs = join(dir, 'theirs');
  await makeCertificates({
    outDir: ours,
    caName: 'pair CA',
    hosts: [
      { name: 'sender', ips: ['127.0.0.1'] },
      { name: 'receiver', dns: ['localhost'], ips: ['127.0.0.1', '::1'] },
      { name: 'intruder', ips: ['127.0.0.1'] },
    ],
  });
  // Same host names, another CA.
  await makeCertificates({
    outDir: theirs,
    caName: 'other CA',
    hosts: [{ name: 'sender' }, { name: 'receiver' }],
    keyType: 'ed25519',
  });
  // A client that trusts both CAs: its own certificate (of the other CA) loads, and it trusts ours.
  bundle = join(dir, 'both-cas.pem');
  await writeFile(
    bundle,
    Buffer.concat([await readFile(join(ours, 'ca.pem')), await readFile(join(theirs, 'ca.pem'))]),
  );
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function certSec(caDir: string, host: string, peerNames?: string[], hostDir = caDir): TlsSecurity {
  return {
    kind: 'tls',
    ca: join(caDir, 'ca.pem'),
    cert: join(hostDir, `${host}.pem`),
    key: join(hostDir, `${host}.key`),
    ...(peerNames ? { peerNames } : {}),
  };
}

interface Running {
  listener: Listener;
  accepted: PeerInfo[];
  refused: RwanError[];
  /** Resolves with the first `n` refusals. */
  refusals(n: number): Promise<RwanError[]>;
}

const open: Listener[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((l) => l.close()));
});

/** A listener on 127.0.0.1 that echoes every byte of each accepted connection. */
async function echoListener(sec: Security | LoadedSecurity, handshakeTimeoutMs = 5_000): Promise<Running> {
  const accepted: PeerInfo[] = [];
  const refused: RwanError[] = [];
  const waiters: Array<() => void> = [];
  const listener = await listen(
    sec,
    { host: '127.0.0.1', port: 0, handshakeTimeoutMs },
    (socket, peer) => {
      accepted.push(peer);
      socket.on('error', () => {});
      socket.pipe(socket);
    },
    (err) => {
      refused.push(err);
      for (const w of waiters.splice(0)) w();
    },
  );
  open.push(listener);
  const refusals = (n: number) =>
    new Promise<RwanError[]>((resolve) => {
      const check = () => {
        if (refused.length >= n) resolve(refused.slice(0, n));
        else waiters.push(check);
      };
      check();
    });
  return { listener, accepted, refused, refusals };
}

/** Write `data`, read back as many bytes, end. */
async function echo(socket: TransportSocket, data: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let got = 0;
  const back = new Promise<Buffer>((resolve, reject) => {
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      got += chunk.length;
      if (got >= data.length) resolve(Buffer.concat(chunks));
    });
    socket.on('error', reject);
  });
  socket.write(data);
  const result = await back;
  socket.destroy();
  return result;
}

/** The RwanError a promise rejects with (fails the test when it resolves). */
async function rejection(p: Promise<unknown>): Promise<RwanError> {
  try {
    const r = await p;
    (r as { socket?: Socket }).socket?.destroy();
  } catch (err) {
    if (isRwanError(err)) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

/** node:tls client options with one of our hosts' certificates, for clients that bypass `connect()`. */
function rawClientOptions(host: string): ConnectionOptions {
  return {
    host: '127.0.0.1',
    ca: readFileSync(join(ours, 'ca.pem')),
    cert: readFileSync(join(ours, `${host}.pem`)),
    key: readFileSync(join(ours, `${host}.key`)),
    minVersion: 'TLSv1.3',
    checkServerIdentity: () => undefined,
  };
}

/** Time until the server closes a raw TCP connection that `act` drives, ms. */
function timeUntilClosed(port: number, act: (s: Socket) => void): Promise<number> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const s = netConnect({ host: '127.0.0.1', port }, () => act(s));
    s.on('error', () => {});
    s.on('close', () => resolve(Date.now() - t0));
  });
}

describe('mutual TLS', () => {
  it('connects two hosts of one CA, reports TLS 1.3 and both names, and echoes bytes', async () => {
    const srv = await echoListener(certSec(ours, 'receiver', ['sender']));
    const { socket, peer } = await connect(certSec(ours, 'sender', ['receiver']), {
      host: '127.0.0.1',
      port: srv.listener.port,
    });
    expect(peer).toMatchObject({
      authenticated: 'certificate',
      peerName: 'receiver',
      protocol: 'TLSv1.3',
      remoteAddress: '127.0.0.1',
      remotePort: srv.listener.port,
    });
    expect(peer.cipher).toMatch(/^TLS_/);
    const data = randomBytes(200_000);
    expect((await echo(socket, data)).equals(data)).toBe(true);
    expect(srv.accepted).toHaveLength(1);
    expect(srv.accepted[0]).toMatchObject({
      authenticated: 'certificate',
      peerName: 'sender',
      protocol: 'TLSv1.3',
    });
    expect(srv.refused).toEqual([]);
  });

  it('matches peerNames against DNS and IP SANs too, and accepts any CA certificate without peerNames', async () => {
    const srv = await echoListener(certSec(ours, 'receiver'));
    const byIp = await connect(certSec(ours, 'sender', ['::1']), {
      host: '127.0.0.1',
      port: srv.listener.port,
    });
    expect(byIp.peer.peerName).toBe('::1');
    byIp.socket.destroy();
    const byDns = await connect(certSec(ours, 'intruder', ['LOCALHOST']), {
      host: '127.0.0.1',
      port: srv.listener.port,
    });
    expect(byDns.peer.peerName).toBe('LOCALHOST');
    expect((await echo(byDns.socket, Buffer.from('x'))).toString()).toBe('x');
    expect(srv.accepted.map((p) => p.peerName)).toEqual(['sender', 'intruder']);
  });

  it('serves many connections from one loaded security', async () => {
    const srv = await echoListener(await loadSecurity(certSec(ours, 'receiver', ['sender'])));
    const client = await loadSecurity(certSec(ours, 'sender', ['receiver']));
    for (let i = 0; i < 3; i++) {
      const { socket } = await connect(client, { host: '127.0.0.1', port: srv.listener.port });
      expect((await echo(socket, Buffer.from(`n${i}`))).toString()).toBe(`n${i}`);
    }
    expect(srv.accepted).toHaveLength(3);
  });

  it('refuses a certificate from another CA on both ends', async () => {
    const srv = await echoListener(certSec(ours, 'receiver'));
    const err = await rejection(
      connect(certSec(theirs, 'sender'), { host: '127.0.0.1', port: srv.listener.port }),
    );
    expect(err.code).toBe('RWAN_ERR_TLS');
    expect(err.details.reason).toBe('unknown-ca');
    expect(err.message).toMatch(/not signed by the configured CA/);
    const [refused] = await srv.refusals(1);
    expect(refused?.code).toBe('RWAN_ERR_TLS');
    expect(srv.accepted).toEqual([]);
  });

  it('the listener refuses a client certificate of another CA even when the client trusts the listener', async () => {
    const srv = await echoListener(certSec(ours, 'receiver'));
    // The client holds a certificate of the other CA but trusts ours: only the listener can refuse.
    const client: TlsSecurity = { ...certSec(theirs, 'sender'), ca: bundle };
    const err = await rejection(connect(client, { host: '127.0.0.1', port: srv.listener.port }));
    expect(err.code).toBe('RWAN_ERR_TLS');
    expect(err.details.reason).toBe('refused-by-peer');
    const [refused] = await srv.refusals(1);
    expect(refused?.code).toBe('RWAN_ERR_TLS');
    expect(refused?.details.reason).toBe('unknown-ca');
    expect(refused?.message).toMatch(/certificate not signed by the configured CA/);
  });

  it('the listener refuses a valid certificate whose name is not in its peerNames, and says so', async () => {
    const srv = await echoListener(certSec(ours, 'receiver', ['sender']));
    const err = await rejection(
      connect(certSec(ours, 'intruder'), { host: '127.0.0.1', port: srv.listener.port }),
    );
    expect(err.code).toBe('RWAN_ERR_TLS');
    expect(err.details).toMatchObject({ reason: 'refused-by-peer', peerReason: 'peer-name' });
    const [refused] = await srv.refusals(1);
    expect(refused?.code).toBe('RWAN_ERR_TLS');
    expect(refused?.details.reason).toBe('peer-name');
    expect(refused?.message).toMatch(/peer name 'intruder' not in peerNames \[sender\]/);
  });

  it('the client refuses a listener whose name is not in its peerNames', async () => {
    const srv = await echoListener(certSec(ours, 'receiver'));
    const err = await rejection(
      connect(certSec(ours, 'sender', ['backup-site']), { host: '127.0.0.1', port: srv.listener.port }),
    );
    expect(err.code).toBe('RWAN_ERR_TLS');
    expect(err.details.reason).toBe('peer-name');
    expect(err.message).toMatch(/peer name 'receiver' not in peerNames \[backup-site\]/);
    const [refused] = await srv.refusals(1);
    expect(refused?.code).toBe('RWAN_ERR_TLS');
    expect(srv.accepted).toEqual([]);
  });

  it('refuses a TLS client that sends no certificate', async () => {
    const srv = await echoListener(certSec(ours, 'receiver'));
    await new Promise<void>((resolve) => {
      const s = tlsConnect({
        host: '127.0.0.1',
        port: srv.listener.port,
        ca: [],
        rejectUnauthorized: false,
        minVersion: 'TLSv1.3',
      });
      s.on('error', () => {});
      s.on('close', () => resolve());
    });
    const [refused] = await srv.refusals(1);
    expect(refused?.code).toBe('RWAN_ERR_TLS');
    expect(refused?.details.reason).toBe('no-certificate');
    expect(refused?.message).toMatch(/peer sent no certificate/);
  });

  it('refuses a plaintext client and keeps serving a good client afterwards', async () => {
    const srv = await echoListener(certSec(ours, 'receiver'));
    await timeUntilClosed(srv.listener.port, (s) => s.write('RW\x01HELLO plaintext peer\r\n\r\n'));
    const [refused] = await srv.refusals(1);
    expect(refused?.code).toBe('RWAN_ERR_TLS');
    expect(refused?.details.reason).toBe('plaintext');
    expect(refused?.message).toMatch(/not a TLS client \(plaintext bytes\)/);
    const { socket } = await connect(certSec(ours, 'sender'), { host: '127.0.0.1', port: srv.listener.port });
    expect((await echo(socket, Buffer.from('still here'))).toString()).toBe('still here');
  });

  it('drops a client that connects and sends nothing after handshakeTimeoutMs', async () => {
    const srv = await echoListener(certSec(ours, 'receiver'), 300);
    const ms = await timeUntilClosed(srv.listener.port, () => {});
    expect(ms).toBeGreaterThanOrEqual(250);
    expect(ms).toBeLessThan(3_000);
    const [refused] = await srv.refusals(1);
    expect(refused?.details.reason).toBe('handshake-timeout');
    expect(refused?.message).toMatch(/handshake timed out after 300 ms/);
  });

  it('drops a client that finishes the TLS handshake but never sends its acceptance byte', async () => {
    const srv = await echoListener(certSec(ours, 'receiver'), 300);
    const t0 = Date.now();
    const got: number[] = [];
    await new Promise<void>((resolve) => {
      const s = tlsConnect({ ...rawClientOptions('sender'), port: srv.listener.port });
      s.on('data', (b: Buffer) => got.push(...b));
      s.on('error', () => {});
      s.on('close', () => resolve());
    });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(got).toEqual([0x01]); // the listener accepted the certificate, then waited in vain
    const [refused] = await srv.refusals(1);
    expect(refused?.details.reason).toBe('handshake-timeout');
    expect(srv.accepted).toEqual([]);
  });

  it('hands bytes sent right behind the acceptance byte on to the application', async () => {
    const srv = await echoListener(certSec(ours, 'receiver'));
    const back = await new Promise<string>((resolve, reject) => {
      let text = '';
      const s = tlsConnect({ ...rawClientOptions('sender'), port: srv.listener.port }, () => {
        s.write(Buffer.concat([Buffer.from([0x01]), Buffer.from('early bytes')]));
      });
      s.on('data', (b: Buffer) => {
        text += b.toString('latin1');
        if (text.length >= 1 + 'early bytes'.length) {
          s.destroy();
          resolve(text);
        }
      });
      s.on('error', reject);
    });
    expect(back).toBe('\x01early bytes');
    expect(srv.accepted[0]?.peerName).toBe('sender');
  });

  it('drops a client that drips its handshake slowly at the same deadline', async () => {
    const srv = await echoListener(certSec(ours, 'receiver'), 300);
    let timer: NodeJS.Timeout | undefined;
    const ms = await timeUntilClosed(srv.listener.port, (s) => {
      // A TLS record header announcing 512 bytes, then one byte every 40 ms: never idle for long.
      s.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]));
      timer = setInterval(() => s.write(Buffer.from([0x01])), 40);
      s.on('close', () => clearInterval(timer));
    });
    clearInterval(timer);
    expect(ms).toBeGreaterThanOrEqual(250);
    expect(ms).toBeLessThan(3_000);
    const [refused] = await srv.refusals(1);
    expect(refused?.details.reason).toBe('handshake-timeout');
  });
});

describe('pre-shared key', () => {
  const key = randomBytes(32);
  const psk = (identity: string, k: Buffer = key): Security => ({ kind: 'psk', identity, key: k });

  it('connects with TLS 1.3 and echoes bytes', async () => {
    const srv = await echoListener(psk('pair-1'));
    const { socket, peer } = await connect(psk('pair-1'), { host: '127.0.0.1', port: srv.listener.port });
    expect(peer).toMatchObject({ authenticated: 'psk', peerName: 'pair-1', protocol: 'TLSv1.3' });
    expect(PSK_CIPHERS.split(':')).toContain(peer.cipher);
    // psk_dhe_ke: an ephemeral (EC)DH exchange on top of the key, so a leaked key does not open old traffic.
    expect((socket as TLSSocket).getEphemeralKeyInfo()).toMatchObject({ type: 'ECDH' });
    const data = randomBytes(50_000);
    expect((await echo(socket, data)).equals(data)).toBe(true);
    expect(srv.accepted[0]).toMatchObject({ authenticated: 'psk', peerName: 'pair-1', protocol: 'TLSv1.3' });
  });

  it('refuses a wrong key on both ends', async () => {
    const srv = await echoListener(psk('pair-1'));
    const err = await rejection(
      connect(psk('pair-1', randomBytes(32)), { host: '127.0.0.1', port: srv.listener.port }),
    );
    expect(err.code).toBe('RWAN_ERR_TLS');
    expect(err.details.reason).toBe('refused-by-peer');
    const [refused] = await srv.refusals(1);
    expect(refused?.code).toBe('RWAN_ERR_TLS');
    expect(refused?.details.reason).toBe('psk-mismatch');
    expect(srv.accepted).toEqual([]);
  });

  it('refuses an unknown identity on both ends', async () => {
    const srv = await echoListener(psk('pair-1'));
    const err = await rejection(connect(psk('pair-2'), { host: '127.0.0.1', port: srv.listener.port }));
    expect(err.code).toBe('RWAN_ERR_TLS');
    const [refused] = await srv.refusals(1);
    expect(refused?.details.reason).toBe('psk-unknown-identity');
    expect(refused?.message).toMatch(/unknown PSK identity 'pair-2'/);
  });

  it('does not mix with certificate mode, in either direction', async () => {
    const pskSrv = await echoListener(psk('pair-1'));
    const e1 = await rejection(
      connect(certSec(ours, 'sender'), { host: '127.0.0.1', port: pskSrv.listener.port }),
    );
    expect(e1.code).toBe('RWAN_ERR_TLS');
    const [r1] = await pskSrv.refusals(1);
    expect(r1?.details.reason).toBe('no-psk');

    const certSrv = await echoListener(certSec(ours, 'receiver'));
    const e2 = await rejection(connect(psk('pair-1'), { host: '127.0.0.1', port: certSrv.listener.port }));
    expect(e2.code).toBe('RWAN_ERR_TLS');
    expect(e2.details.reason).toBe('no-psk');
    expect((await certSrv.refusals(1))[0]?.code).toBe('RWAN_ERR_TLS');
  });

  it('rejects a short key and an empty identity', async () => {
    await expect(loadSecurity({ kind: 'psk', identity: 'a', key: randomBytes(15) })).rejects.toMatchObject({
      code: 'RWAN_ERR_INVALID_VALUE',
    });
    await expect(loadSecurity({ kind: 'psk', identity: '', key })).rejects.toMatchObject({
      code: 'RWAN_ERR_INVALID_VALUE',
    });
  });
});

describe('loadSecurity', () => {
  it('loads a good set once: name, names, expiry', async () => {
    const loaded = await loadSecurity(certSec(ours, 'receiver', ['sender']));
    expect(loaded).toMatchObject({ kind: 'tls', name: 'receiver', peerNames: ['sender'] });
    if (loaded.kind !== 'tls') throw new Error('not tls');
    expect(loaded.names).toEqual(['receiver', 'localhost', '127.0.0.1', expect.stringMatching(/:/)]);
    expect(loaded.notAfter.getTime()).toBeGreaterThan(Date.now());
  });

  it('names a missing file', async () => {
    const sec = { ...certSec(ours, 'sender'), cert: join(ours, 'nobody.pem') };
    const err = await rejection(loadSecurity(sec));
    expect(err.code).toBe('RWAN_ERR_TLS');
    expect(err.details.path).toBe(join(ours, 'nobody.pem'));
    expect(err.message).toContain(join(ours, 'nobody.pem'));
  });

  it('refuses a key that does not match the certificate', async () => {
    const sec = { ...certSec(ours, 'sender'), key: join(ours, 'receiver.key') };
    const err = await rejection(loadSecurity(sec));
    expect(err.code).toBe('RWAN_ERR_TLS');
    expect(err.message).toMatch(/does not match/);
    expect(err.details.path).toBe(join(ours, 'receiver.key'));
  });

  it('refuses a certificate not signed by the CA', async () => {
    const err = await rejection(loadSecurity(certSec(ours, 'sender', undefined, theirs)));
    expect(err.code).toBe('RWAN_ERR_TLS');
    expect(err.details.reason).toBe('unknown-ca');
    expect(err.details.path).toBe(join(theirs, 'sender.pem'));
  });

  it('refuses a file that is not PEM, and an empty peerNames list', async () => {
    const notPem = { ...certSec(ours, 'sender'), ca: join(ours, 'sender.key') };
    expect((await rejection(loadSecurity(notPem))).code).toBe('RWAN_ERR_TLS');
    expect((await rejection(loadSecurity(certSec(ours, 'sender', [])))).code).toBe('RWAN_ERR_INVALID_VALUE');
  });
});

describe('insecure mode and connection errors', () => {
  it('round-trips bytes over plain TCP and says nothing was authenticated', async () => {
    const srv = await echoListener({ kind: 'insecure' });
    const { socket, peer } = await connect(
      { kind: 'insecure' },
      { host: '127.0.0.1', port: srv.listener.port },
    );
    expect(peer.authenticated).toBe('none');
    expect(peer.protocol).toBeUndefined();
    expect((await echo(socket, Buffer.from('plain'))).toString()).toBe('plain');
    expect(srv.accepted[0]?.authenticated).toBe('none');
  });

  it('never falls back: a TLS client refuses a plaintext listener', async () => {
    const plain = await listen({ kind: 'insecure' }, { host: '127.0.0.1', port: 0 }, (s) => {
      s.on('error', () => {});
      s.once('data', () => s.end('RW not TLS at all\r\n'));
    });
    open.push(plain);
    const err = await rejection(connect(certSec(ours, 'sender'), { host: '127.0.0.1', port: plain.port }));
    expect(err.code).toBe('RWAN_ERR_TLS');
    expect(err.details.reason).toBe('plaintext');
  });

  it('maps a refused connection and a port in use to RWAN_ERR_CONNECT', async () => {
    const srv = await echoListener({ kind: 'insecure' });
    const port = srv.listener.port;
    const inUse = await rejection(listen({ kind: 'insecure' }, { host: '127.0.0.1', port }, () => {}));
    expect(inUse.code).toBe('RWAN_ERR_CONNECT');
    expect(inUse.details.code).toBe('EADDRINUSE');
    await srv.listener.close();
    const refused = await rejection(connect(certSec(ours, 'sender'), { host: '127.0.0.1', port }));
    expect(refused.code).toBe('RWAN_ERR_CONNECT');
    expect(refused.details).toMatchObject({ code: 'ECONNREFUSED', address: `127.0.0.1:${port}` });
  });

  it('times out a listener that accepts TCP but never answers the handshake', async () => {
    const silent = netCreateServer((s) => s.on('error', () => {}));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const address = silent.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    try {
      const t0 = Date.now();
      const err = await rejection(
        connect(certSec(ours, 'sender'), { host: '127.0.0.1', port, timeoutMs: 300 }),
      );
      expect(err.code).toBe('RWAN_ERR_TLS');
      expect(err.details.reason).toBe('handshake-timeout');
      expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    } finally {
      silent.close();
    }
  });
});
