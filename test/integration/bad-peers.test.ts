/**
 * Hostile and broken peers against a real `remus-wan receive` while a real `remus-wan send` replicates
 * to it: three processes (the workload writer, the receiver, the sender), the attacks from this one.
 * Each attack must be refused as docs/security.md and docs/protocol.md say, with the receiver's memory
 * bounded and its connections released, while the real session goes on: epochs keep being committed
 * during and after every attack, the sender never has to reconnect, and at the end every committed
 * epoch's replica digest is the sender's digest of that epoch.
 *
 * Needs `npm run build` (the daemons run from dist/) and Linux (/proc for memory and connections).
 * KEEP_BAD_PEERS=1 keeps the temporary directory (certificates, store, stats files) and prints it.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRwanError, type RwanError } from '../../src/errors.js';
import { encodeFrame, hello } from '../../src/protocol/encoder.js';
import { Capability, FrameType, type HelloFrame, Role, WireErrorCode } from '../../src/protocol/frames.js';
import { connect, type LoadedSecurity, loadSecurity, type Security } from '../../src/transport/security.js';
import {
  frameHeader,
  getJson,
  getMetric,
  type LogLine,
  openConnections,
  Probe,
  type Proc,
  procMemory,
  startNode,
  until,
} from './bad-peers-kit.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const WAN = join(ROOT, 'dist/src/cli/wan.js');
const WRITER = join(ROOT, 'dist/tools/workload/writer.js');

const PAGE = 4096;
/** The receiver's --handshake-timeout. */
const HANDSHAKE_MS = 2000;
/** Late timers on a busy 2-core machine. */
const SLACK_MS = 2500;
/** The receiver's resident memory must stay below this. */
const RSS_LIMIT = 300 * 2 ** 20;
const LORISES = 50;

interface RxStatus {
  session: string | null;
  lastCommittedEpoch: number | null;
  connectedChannels: number;
  counters: { epochs: number; refused: number; resumes: number; digestFailures: number };
}
interface TxStatus {
  state: string;
  session: string;
  lastAckedEpoch: number | null;
  counters: { reconnects: number; fullEpochs: number; resentEpochs: number };
}

let dir = '';
let writer: Proc | undefined;
let rx: Proc | undefined;
let tx: Proc | undefined;
let rxPort = 0;
let rxUrl = '';
let txUrl = '';
/** The real session, as the receiver saw it once replication ran. */
let session = '';
/** The real primary's certificate: passes TLS and the receiver's --peer-name. */
let certified: LoadedSecurity;

const P = (f: string) => join(dir, f);
const receiver = (): Proc => rx as Proc;
const rxStatus = () => getJson<RxStatus>(new URL('/status', rxUrl).toString());
const txStatus = () => getJson<TxStatus>(new URL('/status', txUrl).toString());
const committed = async () => (await rxStatus()).lastCommittedEpoch ?? 0;

/** Waits until the receiver committed `n` more epochs than `from`. */
async function advanced(from: number, n = 2, ms = 15_000): Promise<void> {
  await until(async () => (await committed()) >= from + n, ms, `epochs committed past ${from} + ${n}`, 100);
}

/** The real pair as it was: the same session, both channels up, the sender never reconnected. */
async function realSessionIntact(): Promise<void> {
  const [r, t] = await Promise.all([rxStatus(), txStatus()]);
  expect(r.session).toBe(session);
  expect(t.session).toBe(session);
  expect(r.connectedChannels).toBe(2);
  expect(t.state).toBe('replicating');
  expect(t.counters.reconnects).toBe(0);
  expect(t.counters.fullEpochs).toBe(1);
  expect(r.counters.digestFailures).toBe(0);
}

/** Bytes from a seeded xorshift: garbage that is the same on every run. */
function garbage(n: number, seed: number): Buffer {
  let x = seed | 1;
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/** A sender's HELLO (a session of its own unless given), encoded. */
function senderHello(over: Partial<Omit<HelloFrame, 'type'>> = {}): Buffer {
  return Buffer.concat(
    encodeFrame(
      hello({
        sessionId: randomBytes(16),
        pageSize: PAGE,
        role: Role.SENDER,
        capabilities: Capability.ZSTD | Capability.DIGEST | Capability.RESUME,
        cacheBytes: 64 * 2 ** 20,
        peerName: 'bad-peer',
        ...over,
      }),
    ),
  );
}

/** A connection that passed TLS, the CA and --peer-name checks: the frame layer is next. */
async function certifiedProbe(): Promise<Probe> {
  const { socket } = await connect(certified, { host: '127.0.0.1', port: rxPort, timeoutMs: 10_000 });
  return new Probe(socket);
}

/** A plain TCP connection to the receiver's port. */
function tcpProbe(): Promise<Probe> {
  return new Promise((resolveProbe, reject) => {
    const s = netConnect({ host: '127.0.0.1', port: rxPort });
    s.once('error', reject);
    s.once('connect', () => {
      s.off('error', reject);
      resolveProbe(new Probe(s));
    });
  });
}

/** The receiver's "connection refused" line (one not taken yet) for a connection from local port `port`. */
function refusalOf(port: number | undefined, ms = SLACK_MS): Promise<LogLine> {
  return receiver().takeLog(
    (l) => l.msg === 'connection refused' && l.remote === `127.0.0.1:${port}`,
    ms,
    `refusal of 127.0.0.1:${port}`,
  );
}

/**
 * The receiver's session layer refused the connection from local port `port` ("sender refused"), and
 * its refusal counter (status, remus_wan_refused_connections_total) went up.
 */
async function sessionRefused(port: number | undefined, code: string): Promise<void> {
  const line = await receiver().takeLog(
    (l) => l.msg === 'sender refused' && l.peer === `127.0.0.1:${port}`,
    SLACK_MS,
    `session refusal of 127.0.0.1:${port}`,
  );
  expect(line.code).toBe(code);
}

/** The error `p` rejects with (fails the test when it resolves). */
async function rejection(p: Promise<unknown>): Promise<RwanError> {
  try {
    await p;
  } catch (err) {
    if (isRwanError(err)) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

function runNode(args: string[]): Promise<unknown> {
  return promisify(execFile)(process.execPath, args, { cwd: dir });
}

beforeAll(async () => {
  if (!existsSync(WAN) || !existsSync(WRITER)) throw new Error('dist/ is missing: run `npm run build` first');
  dir = mkdtempSync(join(tmpdir(), 'remus-bad-peers-'));
  // the guest: 4096 pages of 4 KiB, about 5000 page writes a second (it starts while the certificates are made)
  writer = startNode(
    [WRITER, '--image', 'img', '--pages', '4096', '--seed', '3', '--dirty-log', 'dl', '--rate', '5000'],
    dir,
  );
  await Promise.all([
    runNode([
      WAN,
      'certs',
      '--out',
      'pki',
      '--host',
      'primary,127.0.0.1',
      '--host',
      'backup,127.0.0.1',
      '--host',
      'intruder,127.0.0.1',
    ]),
    // another CA, whose host certificate names the real primary
    runNode([WAN, 'certs', '--out', 'other', '--ca-name', 'other CA', '--host', 'primary,127.0.0.1']),
  ]);
  // a client that trusts both CAs loads a certificate of the other one and still trusts the receiver
  writeFileSync(
    P('both-cas.pem'),
    Buffer.concat([readFileSync(P('pki/ca.pem')), readFileSync(P('other/ca.pem'))]),
  );
  certified = await loadSecurity({
    kind: 'tls',
    ca: P('pki/ca.pem'),
    cert: P('pki/primary.pem'),
    key: P('pki/primary.key'),
    peerNames: ['backup'],
  });

  const [, writerPid] = await writer.waitOut(/^ready (\d+)$/, 20_000);
  const tls = (host: string, peer: string) => [
    '--tls-ca',
    'pki/ca.pem',
    '--tls-cert',
    `pki/${host}.pem`,
    '--tls-key',
    `pki/${host}.key`,
    '--peer-name',
    peer,
  ];
  rx = startNode(
    [
      WAN,
      'receive',
      '--listen',
      '127.0.0.1:0',
      '--store',
      'store',
      ...tls('backup', 'primary'),
      '--metrics',
      '127.0.0.1:0',
      '--stats',
      'rx.jsonl',
      '--verify',
      '--handshake-timeout',
      `${HANDSHAKE_MS / 1000}s`,
    ],
    dir,
  );
  const listening = await rx.waitLog((l) => l.msg === 'listening', 20_000, 'receiver listening');
  rxPort = Number(String(listening.listen).split(':').pop());
  rxUrl = String((await rx.waitLog((l) => l.msg === 'status endpoint', 1000, 'receiver metrics')).metrics);
  tx = startNode(
    [
      WAN,
      'send',
      '--connect',
      `127.0.0.1:${rxPort}`,
      '--image',
      'img',
      '--dirty-log',
      'dl',
      '--pause-pid',
      String(writerPid),
      ...tls('primary', 'backup'),
      '--metrics',
      '127.0.0.1:0',
      '--stats',
      'tx.jsonl',
      '--verify',
      '--epoch',
      '50ms',
    ],
    dir,
  );
  txUrl = String((await tx.waitLog((l) => l.msg === 'status endpoint', 20_000, 'sender metrics')).metrics);
  await until(async () => (await committed()) >= 3, 30_000, 'the first epochs committed', 100);
  session = (await rxStatus()).session ?? '';
  expect(session).toMatch(/^[0-9a-f]{32}$/);
  await realSessionIntact();
});

afterAll(async () => {
  // only the processes this file started, each by its own handle
  for (const p of [tx, rx, writer]) if (p) await p.stop();
  if (dir && !process.env.KEEP_BAD_PEERS) rmSync(dir, { recursive: true, force: true });
  else if (dir) console.log(dir);
});

describe('remus-wan receive under hostile peers, while the real sender replicates', () => {
  it('garbage: plain TCP noise is refused by TLS; a certified peer sending a bad magic gets ERROR PROTOCOL_VIOLATION', async () => {
    const before = await rxStatus();

    const plain = await tcpProbe();
    const plainPort = plain.localPort;
    plain.socket.write(garbage(4096, 7));
    await plain.closedWithin(HANDSHAKE_MS + SLACK_MS);
    const refusal = await refusalOf(plainPort);
    expect(refusal.code).toBe('RWAN_ERR_TLS');
    // refused for what it sent, not left to the handshake deadline
    expect(['plaintext', 'tls', 'protocol']).toContain(refusal.reason);
    expect(plain.frames).toEqual([]);

    const certifiedGarbage = await certifiedProbe();
    const junk = garbage(512, 11);
    junk[0] = 0x00; // not 'R'
    certifiedGarbage.socket.write(junk);
    const err = await certifiedGarbage.errorFrame(HANDSHAKE_MS);
    expect(err.code).toBe(WireErrorCode.PROTOCOL_VIOLATION);
    expect(err.fatal).toBe(true);
    expect(err.message).toMatch(/bad magic/);
    await certifiedGarbage.closedWithin(SLACK_MS);
    expect(certifiedGarbage.significant.map((f) => f.type)).toEqual([FrameType.ERROR]);

    await sessionRefused(certifiedGarbage.localPort, 'RWAN_ERR_PROTOCOL_BAD_MAGIC');
    expect((await rxStatus()).counters.refused).toBeGreaterThanOrEqual(before.counters.refused + 1);
    await advanced(before.lastCommittedEpoch ?? 0);
    await realSessionIntact();
  }, 30_000);

  it(`slow-loris: ${LORISES} byte-dripping TLS handshakes and a byte-dripping HELLO are dropped on time, memory and connections bounded`, async () => {
    const before = await rxStatus();
    await until(() => openConnections(receiver().pid, rxPort) === 2, 5000, 'only the real channels open');
    const rss0 = procMemory(receiver().pid, 'VmRSS');
    let peakRss = rss0;
    let peakConnections = 0;
    let slowHelloPort: number | undefined;
    const sampler = setInterval(() => {
      try {
        peakRss = Math.max(peakRss, procMemory(receiver().pid, 'VmRSS'));
        peakConnections = Math.max(peakConnections, openConnections(receiver().pid, rxPort));
      } catch {
        // the receiver is gone: the checks below fail
      }
    }, 50);
    const t0 = performance.now();
    try {
      // each opens a TLS handshake record of 16 KiB, then sends one byte of it every 300 ms
      const lorises = await Promise.all(Array.from({ length: LORISES }, () => tcpProbe()));
      for (const l of lorises) l.socket.write(Buffer.from([0x16, 0x03, 0x01, 0x40, 0x00]));
      const drip = setInterval(() => {
        for (const l of lorises) if (l.closedAt === undefined) l.socket.write(Buffer.from([0]));
      }, 300);

      // a certified peer that sends its HELLO one byte every 100 ms (it would need 6 s)
      const slowHello = await certifiedProbe();
      slowHelloPort = slowHello.localPort;
      const tHandedOff = performance.now();
      const helloBytes = senderHello();
      let sent = 0;
      const helloDrip = setInterval(() => {
        if (slowHello.closedAt === undefined && sent < helloBytes.length)
          slowHello.socket.write(helloBytes.subarray(sent, ++sent));
      }, 100);

      try {
        await Promise.all(lorises.map((l) => l.closedWithin(HANDSHAKE_MS + SLACK_MS)));
        const err = await slowHello.errorFrame(HANDSHAKE_MS + SLACK_MS);
        expect(err.code).toBe(WireErrorCode.TIMEOUT);
        expect(err.message).toMatch(/no HELLO within 2000 ms/);
        await slowHello.closedWithin(SLACK_MS);
      } finally {
        clearInterval(drip);
        clearInterval(helloDrip);
      }
      const lifetimes = lorises.map((l) => (l.closedAt ?? Number.POSITIVE_INFINITY) - t0);
      expect(Math.max(...lifetimes)).toBeLessThan(HANDSHAKE_MS + SLACK_MS);
      expect(Math.min(...lifetimes)).toBeGreaterThan(HANDSHAKE_MS * 0.9); // held to the deadline, not refused for a byte
      expect(
        (slowHello.closedAt ?? Number.POSITIVE_INFINITY) - tHandedOff,
        'HELLO dripper dropped',
      ).toBeLessThan(HANDSHAKE_MS + SLACK_MS);
      expect(sent).toBeLessThan(helloBytes.length);
      expect(slowHello.significant.map((f) => f.type)).toEqual([FrameType.ERROR]);
      for (const l of lorises) {
        expect(l.frames).toEqual([]);
        const refusal = await refusalOf(l.localPort);
        expect(refusal.code).toBe('RWAN_ERR_TLS');
        expect(refusal.reason).toBe('handshake-timeout');
      }
      // the real replication went on while the connections were held
      expect(await committed()).toBeGreaterThan(before.lastCommittedEpoch ?? 0);

      // every connection was accepted and held, and all of them are released
      expect(peakConnections).toBeGreaterThanOrEqual(2 + LORISES);
      await until(
        () => openConnections(receiver().pid, rxPort) === 2,
        5000,
        'connections back to the real two',
      );
    } finally {
      clearInterval(sampler);
    }
    expect(peakRss).toBeLessThan(RSS_LIMIT);
    expect(await getMetric(rxUrl, 'process_resident_memory_bytes')).toBeLessThan(RSS_LIMIT);
    await sessionRefused(slowHelloPort, 'RWAN_ERR_PEER');
    expect((await rxStatus()).counters.refused).toBeGreaterThanOrEqual(before.counters.refused + 1);
    await advanced(await committed());
    await realSessionIntact();
  }, 40_000);

  it('oversized frames: a 4 GiB CHUNK and a 4097-byte control frame behind a valid HELLO get ERROR TOO_LARGE at once', async () => {
    const before = await rxStatus();
    const rss0 = procMemory(receiver().pid, 'VmRSS');
    const cases = [
      {
        what: '4 GiB CHUNK',
        header: frameHeader(FrameType.CHUNK, 0xffff_ffff),
        text: /CHUNK of 4294967295 bytes/,
      },
      {
        what: '4097-byte EPOCH_BEGIN',
        header: frameHeader(FrameType.EPOCH_BEGIN, 4097),
        text: /of 4097 bytes > 4096/,
      },
    ];
    for (const c of cases) {
      const p = await certifiedProbe();
      const t0 = performance.now();
      // one write, and no payload byte ever comes: the decoder meets the header before the HELLO
      // reaches the session. (A HELLO with a session id of its own that completes its handshake
      // takes the receiver's session over: ReceiverSession.handshake, a new sender session.)
      p.socket.write(Buffer.concat([senderHello(), c.header]));
      const err = await p.errorFrame(HANDSHAKE_MS);
      expect(err.code, c.what).toBe(WireErrorCode.TOO_LARGE);
      expect(err.message, c.what).toMatch(c.text);
      expect(performance.now() - t0, c.what).toBeLessThan(HANDSHAKE_MS);
      await p.closedWithin(SLACK_MS);
      // refused before the HELLO was answered: the real session was never touched
      expect(
        p.significant.map((f) => f.type),
        c.what,
      ).toEqual([FrameType.ERROR]);
      await sessionRefused(p.localPort, 'RWAN_ERR_PROTOCOL_FRAME_TOO_LARGE');
    }
    const rss1 = procMemory(receiver().pid, 'VmRSS');
    expect(rss1 - rss0).toBeLessThan(64 * 2 ** 20);
    expect(rss1).toBeLessThan(RSS_LIMIT);
    expect((await rxStatus()).counters.refused).toBeGreaterThanOrEqual(
      before.counters.refused + cases.length,
    );
    await advanced(before.lastCommittedEpoch ?? 0);
    await realSessionIntact();
  }, 30_000);

  it('wrong certificates: another CA, a name not in --peer-name, no certificate, plaintext: each refused with its reason', async () => {
    const before = await rxStatus();
    const opts = { host: '127.0.0.1', port: rxPort, timeoutMs: 10_000 };
    const refusalAfter = (mark: number, reason: string) =>
      receiver().takeLog(
        (l) => l.msg === 'connection refused' && l.reason === reason,
        SLACK_MS,
        `a '${reason}' refusal`,
        mark,
      );

    const first = receiver().logs.length;
    // a certificate of another CA (naming the real primary); the client trusts both CAs
    let mark = first;
    const otherCa: Security = {
      kind: 'tls',
      ca: P('both-cas.pem'),
      cert: P('other/primary.pem'),
      key: P('other/primary.key'),
      peerNames: ['backup'],
    };
    const e1 = await rejection(connect(otherCa, opts));
    expect(e1.code).toBe('RWAN_ERR_TLS');
    expect(e1.details.reason).toBe('refused-by-peer');
    expect((await refusalAfter(mark, 'unknown-ca')).code).toBe('RWAN_ERR_TLS');

    // a certificate of the right CA whose name is not in the receiver's --peer-name
    mark = receiver().logs.length;
    const intruder: Security = {
      kind: 'tls',
      ca: P('pki/ca.pem'),
      cert: P('pki/intruder.pem'),
      key: P('pki/intruder.key'),
      peerNames: ['backup'],
    };
    const e2 = await rejection(connect(intruder, opts));
    expect(e2.code).toBe('RWAN_ERR_TLS');
    expect(e2.details.reason).toBe('refused-by-peer');
    expect(e2.details.peerReason).toBe('peer-name');
    expect(String((await refusalAfter(mark, 'peer-name')).err)).toMatch(
      /peer name 'intruder' not in peerNames \[primary\]/,
    );

    // no client certificate (connect() always presents one: a bare TLS client)
    mark = receiver().logs.length;
    const bare = tlsConnect({
      host: '127.0.0.1',
      port: rxPort,
      ca: readFileSync(P('pki/ca.pem')),
      minVersion: 'TLSv1.3',
      checkServerIdentity: () => undefined,
    });
    const bareProbe = new Probe(bare);
    await bareProbe.closedWithin(HANDSHAKE_MS + SLACK_MS);
    expect(Buffer.concat(bareProbe.raw).length, 'no acceptance byte').toBe(0);
    expect((await refusalAfter(mark, 'no-certificate')).code).toBe('RWAN_ERR_TLS');

    // plaintext: connect() in insecure mode reaches TCP only; the HELLO it sends is not TLS
    const plain = await connect({ kind: 'insecure' }, opts);
    const plainProbe = new Probe(plain.socket);
    plain.socket.write(senderHello());
    await plainProbe.closedWithin(HANDSHAKE_MS + SLACK_MS);
    expect(plainProbe.frames).toEqual([]);
    expect((await refusalOf(plainProbe.localPort)).reason).toBe('plaintext');

    // none of them reached the session layer
    expect(
      receiver()
        .logs.slice(first)
        .filter((l) => l.msg === 'sender refused'),
    ).toEqual([]);
    await advanced(before.lastCommittedEpoch ?? 0);
    await realSessionIntact();
  }, 30_000);

  it('a second certified "sender" with another page size or protocol version is refused (INCOMPATIBLE / UNSUPPORTED_VERSION)', async () => {
    const before = await rxStatus();
    const headerV2 = senderHello();
    headerV2[2] = 2; // the frame header's version
    const cases = [
      {
        what: 'page size 8192',
        bytes: senderHello({ pageSize: 8192 }),
        code: WireErrorCode.INCOMPATIBLE,
        text: /page size 8192, the replica's is 4096/,
        refusal: 'RWAN_ERR_PEER',
      },
      {
        what: 'HELLO versions 2..3',
        bytes: senderHello({ minVersion: 2, maxVersion: 3 }),
        code: WireErrorCode.UNSUPPORTED_VERSION,
        text: /versions 2\.\.3, not 1/,
        refusal: 'RWAN_ERR_PEER',
      },
      {
        what: 'frame header version 2',
        bytes: headerV2,
        code: WireErrorCode.UNSUPPORTED_VERSION,
        text: /frame version 2/,
        refusal: 'RWAN_ERR_PROTOCOL_UNSUPPORTED_VERSION',
      },
    ];
    for (const c of cases) {
      const p = await certifiedProbe();
      p.socket.write(c.bytes);
      const err = await p.errorFrame(HANDSHAKE_MS);
      expect(err.code, c.what).toBe(c.code);
      expect(err.fatal, c.what).toBe(true);
      expect(err.message, c.what).toMatch(c.text);
      await p.closedWithin(SLACK_MS);
      expect(
        p.significant.map((f) => f.type),
        c.what,
      ).toEqual([FrameType.ERROR]);
      await sessionRefused(p.localPort, c.refusal);
    }
    expect((await rxStatus()).counters.refused).toBeGreaterThanOrEqual(
      before.counters.refused + cases.length,
    );
    // each carried a session id of its own, yet the real session stays the receiver's
    await advanced(before.lastCommittedEpoch ?? 0);
    await realSessionIntact();
  }, 30_000);

  it('a second certified sender with a valid HELLO cannot take over a live session, nor add a channel to it', async () => {
    const before = await rxStatus();
    const sessionId = Buffer.from(before.session ?? '', 'hex');
    const cases = [
      {
        what: 'a new session while the current one is live',
        bytes: senderHello(),
        code: WireErrorCode.UNKNOWN_SESSION,
        text: /another sender session .* is active/,
      },
      {
        what: "the session's id, channel 2 of 3 (the session has 2)",
        bytes: senderHello({ sessionId, channelIndex: 2, channelCount: 3 }),
        code: WireErrorCode.INCOMPATIBLE,
        text: /channel 2 of 3: the session has 2/,
      },
    ];
    for (const c of cases) {
      const p = await certifiedProbe();
      p.socket.write(c.bytes);
      const err = await p.errorFrame(HANDSHAKE_MS);
      expect(err.code, c.what).toBe(c.code);
      expect(err.message, c.what).toMatch(c.text);
      await p.closedWithin(SLACK_MS);
      expect(
        p.significant.map((f) => f.type),
        c.what,
      ).toEqual([FrameType.ERROR]);
    }
    // nothing was dropped or replaced: replication goes on, no reconnect, no full copy
    await advanced(before.lastCommittedEpoch ?? 0, 3);
    await realSessionIntact();
  }, 30_000);

  it('the real session ran through it all: every committed epoch is the sender’s image, one full copy, no reconnect', async () => {
    const last = await committed();
    await advanced(last, 2);
    await realSessionIntact();
    expect(procMemory(receiver().pid, 'VmHWM')).toBeLessThan(RSS_LIMIT);
    expect(await (tx as Proc).stop()).toBe(0);
    expect(await receiver().stop()).toBe(0);

    const rows = <T>(f: string): T[] =>
      readFileSync(P(f), 'utf8')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as T);
    const got = rows<{ epoch: number; full: boolean; replicaDigest?: string }>('rx.jsonl');
    const sent = rows<{ epoch: number; full: boolean; digest?: string }>('tx.jsonl');
    // every epoch committed once, in order, from the one full copy on
    expect(got.map((g) => g.epoch)).toEqual(Array.from({ length: got.length }, (_, i) => i + 1));
    expect(got.filter((g) => g.full).map((g) => g.epoch)).toEqual([1]);
    expect(sent.filter((s) => s.full).map((s) => s.epoch)).toEqual([1]);
    // an acknowledged epoch was committed; the ACKs of the last ones (a window: 4) may be lost to the stop
    expect(got.length - sent.length).toBeGreaterThanOrEqual(0);
    expect(got.length - sent.length).toBeLessThanOrEqual(4);
    const digestOf = new Map(got.map((g) => [g.epoch, g.replicaDigest]));
    for (const s of sent) {
      expect(s.digest, `epoch ${s.epoch}`).toMatch(/^[0-9a-f]{32}$/);
      expect(digestOf.get(s.epoch), `epoch ${s.epoch}`).toBe(s.digest);
    }
    expect(sent.length).toBeGreaterThan(10);
    // one session from start to end, never lost
    const logs = receiver().logs;
    expect(logs.filter((l) => l.msg === 'new sender session').map((l) => l.session)).toEqual([session]);
    expect(logs.filter((l) => l.msg === 'primary lost')).toEqual([]);
  }, 30_000);
});
