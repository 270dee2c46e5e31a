/**
 * The two daemons, assembled from their settings: the session, the secured transport, the stats file,
 * the status/metrics endpoint, the failover hook, and a clean stop on SIGTERM/SIGINT.
 *
 *   send:     ImageSource ─► SenderSession ─► connect() (TLS/PSK/plain) ─► receiver
 *   receive:  listen() ─► ReceiverSession ─► ReplicaStore;  'primary-lost' ─► hook command
 *   both:     GET /metrics (Prometheus), GET /status (JSON), POST /rate (sender: change the cap);
 *             one JSON line per epoch in the stats file (remus-plan reads the sender's)
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import { fixMmapThreshold, nativeLoadError, trimHeap, zstdAsync } from '../codec/hot-loops.js';
import { RwanError } from '../errors.js';
import { makeLogger } from '../observability/logger.js';
import { LoopDelay, receiverMetrics, senderMetrics } from '../observability/metrics.js';
import { type EncoderPort, InlineEncoder, PoolEncoder, WorkerEncoder } from '../replication/encoder-port.js';
import { startProxy } from '../replication/proxy.js';
import { type ReceiverEpochStats, ReceiverSession } from '../replication/receiver.js';
import { type EpochSource, type Log, type SenderEpochStats, SenderSession } from '../replication/sender.js';
import { ImageSource } from '../replication/source-image.js';
import { checkRate } from '../transport/rate-limit.js';
import { configureTcp, connect, listen, type Security } from '../transport/security.js';
import { parseBytes, parseRate } from '../units.js';
import type {
  CommonSettings,
  ReceiveSettings,
  SecuritySettings,
  SenderCommonSettings,
  SendSettings,
} from './config.js';

/**
 * What every daemon does first: its logger, the TCP tuning of its connections (a failure to apply it
 * logged once), and its security settings with their key files read.
 */
export async function startDaemon(
  s: CommonSettings,
  role: 'send' | 'receive',
): Promise<{ log: ReturnType<typeof makeLogger>; security: Security }> {
  const log = makeLogger({ level: s.logLevel, role, name: s.name });
  configureTcp({
    rtoMinUs: s.tcpRtoMinUs,
    congestion: s.tcpCongestion,
    onError: (message) => log.warn({}, message),
  });
  return { log, security: await loadSecuritySettings(s.security) };
}

/** Read key files: the transport's {@link Security} from the settings. */
export async function loadSecuritySettings(s: SecuritySettings): Promise<Security> {
  if (s.kind !== 'psk') return s;
  let key: Buffer;
  try {
    const text = (await readFile(s.keyFile, 'utf8')).trim();
    key =
      /^[0-9a-fA-F]+$/.test(text) && text.length % 2 === 0
        ? Buffer.from(text, 'hex')
        : Buffer.from(text, 'base64');
  } catch (err) {
    throw new RwanError('RWAN_ERR_TLS', `PSK key file ${s.keyFile}: ${(err as Error).message}`, {
      cause: err,
      details: { path: s.keyFile },
    });
  }
  return { kind: 'psk', identity: s.identity, key };
}

/** Appends one JSON line per epoch. */
export class StatsFile {
  private readonly out: WriteStream;
  constructor(path: string) {
    this.out = createWriteStream(path, { flags: 'a' });
  }
  write(row: object): void {
    this.out.write(`${JSON.stringify(row)}\n`);
  }
  async close(): Promise<void> {
    this.out.end();
    await once(this.out, 'close');
  }
}

/** Byte and epoch rates over a sliding window, for `status`. */
class Rates {
  private readonly samples: Array<{ t: number; raw: number; wire: number }> = [];
  add(raw: number, wire: number): void {
    const t = performance.now();
    this.samples.push({ t, raw, wire });
    while (this.samples.length > 0 && t - (this.samples[0] as { t: number }).t > 10_000) this.samples.shift();
  }
  get(): { rawBytesPerSecond: number; wireBytesPerSecond: number; compression: number | null } {
    const now = performance.now();
    const span = Math.max(1, Math.min(10_000, now - (this.samples[0]?.t ?? now))) / 1000;
    const raw = this.samples.reduce((s, x) => s + x.raw, 0);
    const wire = this.samples.reduce((s, x) => s + x.wire, 0);
    return {
      rawBytesPerSecond: raw / span,
      wireBytesPerSecond: wire / span,
      compression: raw > 0 ? wire / raw : null,
    };
  }
}

/** A POST handler of the HTTP endpoint: the JSON body in, the JSON answer out. */
export type PostHandler = (body: Record<string, unknown>) => object | Promise<object>;

/** POST /promote of a receiving daemon: `{"token": N}` in, `{"promoted": {token, epoch}}` out. */
export function promoteHandler(session: {
  promote(token: number): Promise<{ token: number; epoch: number | null }>;
}): Record<string, PostHandler> {
  return { '/promote': (b) => session.promote(Number(b.token)).then((promoted) => ({ promoted })) };
}

/** The HTTP endpoint: /metrics, /status and the POST handlers (sender /rate, receiver /promote). */
export async function serveHttp(
  where: { host: string; port: number },
  registry: Registry,
  status: () => object,
  posts: Record<string, PostHandler>,
  log: Log,
): Promise<Server> {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const reply = (code: number, body: string, type = 'application/json') => {
      res.writeHead(code, { 'content-type': type });
      res.end(body);
    };
    (async () => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (req.method === 'GET' && url.pathname === '/metrics') {
        reply(200, await registry.metrics(), registry.contentType);
      } else if (req.method === 'GET' && url.pathname === '/status') {
        reply(200, `${JSON.stringify(status(), null, 2)}\n`);
      } else if (req.method === 'POST' && Object.hasOwn(posts, url.pathname)) {
        let body = '';
        for await (const c of req) {
          body += c;
          if (body.length > 4096) throw new RwanError('RWAN_ERR_INVALID_VALUE', 'body too large');
        }
        const parsed: unknown = JSON.parse(body || '{}');
        if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
          throw new RwanError('RWAN_ERR_INVALID_VALUE', 'the body must be a JSON object');
        const handler = posts[url.pathname] as PostHandler;
        reply(200, `${JSON.stringify(await handler(parsed as Record<string, unknown>))}\n`);
      } else {
        reply(404, '{"error":"not found"}\n');
      }
    })().catch((err: unknown) => {
      const e =
        err instanceof RwanError
          ? err
          : new RwanError('RWAN_ERR_INVALID_VALUE', String((err as Error).message));
      reply(400, `${JSON.stringify({ error: e.toJSON() })}\n`);
    });
  });
  server.on('error', (err) => log.error({ err: err.message }, 'status endpoint error'));
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new RwanError('RWAN_ERR_CONNECT', `metrics ${where.host}:${where.port}: ${err.code ?? err.message}`, {
          cause: err,
        }),
      ),
    );
    server.listen(where.port, where.host, resolve);
  });
  log.info(
    { metrics: `http://${where.host}:${(server.address() as { port: number }).port}` },
    'status endpoint',
  );
  return server;
}

/** What `open` opens; if it cannot, the endpoint `http` (opened before it) is closed too. */
export async function closingOnFailure<T>(http: Server | undefined, open: () => Promise<T>): Promise<T> {
  try {
    return await open();
  } catch (err) {
    http?.close();
    throw err;
  }
}

/** Resolves on the first SIGTERM or SIGINT. */
export function untilSignal(): Promise<string> {
  return new Promise((resolve) => {
    const on = (sig: string) => {
      process.off('SIGTERM', on);
      process.off('SIGINT', on);
      resolve(sig);
    };
    process.on('SIGTERM', on);
    process.on('SIGINT', on);
  });
}

/**
 * A sender session over the settings' transport, codec and encoder (send and tunnel share it).
 * `o`: the capture interval (0: the source's pace), a limit, HELLO capability bits.
 */
export function makeSenderSession(
  s: SenderCommonSettings,
  security: Security,
  source: EpochSource,
  log: Log,
  o: { epochMs: number; maxEpochs?: number; capabilities?: number },
): { session: SenderSession; encoder: EncoderPort } {
  const codec = {
    pageSize: s.pageSize,
    cacheBytes: s.cacheBytes,
    chunkBytes: s.chunkBytes,
    zstdLevel: s.zstdLevel,
  };
  let kind = s.encoder;
  if (kind === 'pool' && zstdAsync === undefined) {
    log.warn({ reason: nativeLoadError }, 'encoder pool needs the native addon: encoding on a worker thread');
    kind = 'worker';
  }
  const encoder: EncoderPort =
    kind === 'worker'
      ? new WorkerEncoder(codec)
      : kind === 'pool'
        ? new PoolEncoder(codec)
        : new InlineEncoder(codec);
  const session = new SenderSession({
    encoder,
    dial: () =>
      connect(security, { host: s.connect.host, port: s.connect.port, timeoutMs: s.handshakeTimeoutMs }),
    source,
    pageSize: s.pageSize,
    channels: s.channels,
    copiesBelowBytes: s.copiesBelowBytes,
    hedgeAfterMs: s.hedgeAfterMs,
    window: s.window,
    epochMs: o.epochMs,
    codec: { cacheBytes: s.cacheBytes, chunkBytes: s.chunkBytes, zstdLevel: s.zstdLevel },
    rate: s.rate,
    heartbeatMs: s.heartbeatMs,
    idleTimeoutMs: s.idleTimeoutMs,
    handshakeTimeoutMs: s.handshakeTimeoutMs,
    // a link that comes back must be used well within the receiver's dead time (default 3 s): with
    // retries up to 5 s apart, a 1.5 s cut could stay silent for 3.6 s and be declared a lost primary
    reconnect: { initialMs: 100, maxMs: 500 },
    ...(o.maxEpochs === undefined ? {} : { maxEpochs: o.maxEpochs }),
    ...(o.capabilities === undefined ? {} : { capabilities: o.capabilities }),
    peerName: s.name,
    log,
  });
  return { session, encoder };
}

/** Run `remus-wan send` until stopped (signal, --max-epochs, or a fatal error). Returns the exit status. */
export async function runSend(s: SendSettings): Promise<number> {
  const { log, security } = await startDaemon(s, 'send');
  const source = await ImageSource.open({
    path: s.image,
    pageSize: s.pageSize,
    dirty: s.dirtyLog ? { kind: 'log', path: s.dirtyLog } : { kind: 'hash' },
    ...(s.pausePid === undefined ? {} : { pausePid: s.pausePid }),
    verify: s.verify,
  });
  const { session, encoder } = makeSenderSession(s, security, source, log, {
    epochMs: s.epochMs,
    ...(s.maxEpochs === undefined ? {} : { maxEpochs: s.maxEpochs }),
  });
  const proxies: Awaited<ReturnType<typeof startProxy>>[] = [];
  const stats = s.statsFile ? new StatsFile(s.statsFile) : undefined;
  const rates = new Rates();
  const loop = new LoopDelay();
  const trim = trimEverySecond();
  session.on('epoch', (e: SenderEpochStats) => {
    stats?.write(e);
    rates.add(e.rawBytes, e.wireBytes);
    if (e.full)
      log.info(
        { epoch: e.epoch, pages: e.dirtyPages, wireBytes: e.wireBytes, ackMs: Math.round(e.ackMs) },
        'full copy acknowledged',
      );
  });
  session.on('progress', (p: { epoch: number; sentBytes: number; totalBytes: number }) =>
    log.info(
      { ...p, percent: Math.round((100 * p.sentBytes) / Math.max(1, p.totalBytes)) },
      'full copy in progress',
    ),
  );
  session.on('state', (st: string) => log.info({ state: st }, 'state'));
  const status = () => ({
    role: 'send',
    name: s.name,
    state: session.state,
    session: session.sessionId.toString('hex'),
    peer: `${s.connect.host}:${s.connect.port}`,
    lastAckedEpoch: session.lastAckedEpoch,
    epochsInFlight: session.inFlight,
    lagMs: Math.round(session.lagMs),
    peers: session.peers,
    rttMs: session.rttMs ?? null,
    ...rates.get(),
    rateLimit: session.rate.settings,
    counters: session.counters,
    proxies: proxies.map((p) => ({
      port: p.port,
      heldBytes: p.gate.heldBytes,
      waitsFor: p.gate.waitsFor,
      ...p.counters,
    })),
    eventLoopDelay: loop.snapshot(),
  });
  const onRate = (b: { rate?: unknown; burst?: unknown }) => {
    if (b.rate === null || b.rate === 'off') session.rate.update(null);
    else {
      const bytesPerSecond = parseRate(String(b.rate), { what: 'rate' });
      const burstBytes = b.burst
        ? parseBytes(String(b.burst), { what: 'burst' })
        : (session.rate.settings?.burstBytes ?? 4 * 2 ** 20);
      session.rate.update(checkRate({ bytesPerSecond, burstBytes }));
    }
    log.info({ rateLimit: session.rate.settings }, 'rate limit changed');
    return { rateLimit: session.rate.settings };
  };
  // the endpoint, then the proxies, before any client or the receiver is served: a sender that cannot
  // open one of them has accepted nothing
  const http = s.metrics
    ? await serveHttp(s.metrics, senderMetrics(session, loop), status, { '/rate': onRate }, log)
    : undefined;
  // output commit: each proxy's answers wait for the epoch captured after them
  const started = await Promise.allSettled(
    (s.proxies ?? []).map((p) => startProxy({ ...p, maxHeldBytes: s.proxyBufferBytes ?? 16 * 2 ** 20, log })),
  );
  for (const r of started) if (r.status === 'fulfilled') proxies.push(r.value);
  const failed = started.find((r) => r.status === 'rejected');
  if (failed) {
    for (const p of proxies) await p.close();
    http?.close();
    throw failed.reason;
  }
  for (const p of proxies) {
    session.on('capture-start', (epoch: number) => p.gate.captureStarting(epoch));
    session.on('epoch', (e: SenderEpochStats) => p.gate.acked(e.epoch));
  }
  log.info(
    { image: s.image, peer: `${s.connect.host}:${s.connect.port}`, security: s.security.kind },
    'sending',
  );
  const signal = untilSignal().then((sig) => {
    log.info({ signal: sig }, 'stopping');
    return session.stop();
  });
  await Promise.race([session.run(), signal]);
  await session.stop();
  for (const p of proxies) await p.close();
  loop.stop();
  clearInterval(trim);
  http?.close();
  await stats?.close();
  await source.close();
  await encoder.close();
  const err = session.error;
  if (err) {
    log.error({ code: err.code, err: err.message }, 'stopped on error');
    return err.exitCode;
  }
  log.info({ lastAckedEpoch: session.lastAckedEpoch }, 'stopped');
  return 0;
}

/**
 * The C heap gives memory back to the system: blocks of 128 KiB and more (captures, chunks, frames,
 * decoded pages) are mappings of their own, unmapped when freed (fixMmapThreshold; with glibc's
 * default threshold, which rises as such blocks are freed, the sender's encoder thread kept 25–45 MiB
 * of them in its arena), and once a second the free memory of the smaller ones goes back too
 * (malloc_trim; the receiver held ~20 MiB it no longer used without it). A trim takes well under a
 * millisecond here.
 */
export function trimEverySecond(): NodeJS.Timeout {
  fixMmapThreshold(128 * 1024);
  return setInterval(() => trimHeap(), 1000).unref();
}

/** Run `remus-wan receive` until SIGTERM/SIGINT (or a fatal store error). Returns the exit status. */
export async function runReceive(s: ReceiveSettings): Promise<number> {
  const { log, security } = await startDaemon(s, 'receive');
  const session = await ReceiverSession.create({
    store: { dir: s.store, checkpointBytes: s.checkpointBytes },
    pageSize: s.pageSize,
    cacheBytes: s.cacheBytes,
    heartbeatMs: s.heartbeatMs,
    idleTimeoutMs: s.idleTimeoutMs,
    handshakeTimeoutMs: s.handshakeTimeoutMs,
    deadTimeMs: s.deadTimeMs,
    stagingBytes: s.stagingBytes,
    verify: s.verify,
    peerName: s.name,
    log,
  });
  const { recovery } = session;
  log.info(
    {
      store: s.store,
      committedEpoch: session.store.state.committedEpoch,
      sidecarEpoch: recovery.sidecarEpoch,
      replayed: recovery.replayedEpochs.length,
      truncatedBytes: recovery.truncatedBytes,
    },
    'replica store opened',
  );
  const stats = s.statsFile ? new StatsFile(s.statsFile) : undefined;
  const rates = new Rates();
  const loop = new LoopDelay();
  const trim = trimEverySecond();
  let fatal: RwanError | undefined;
  session.on('epoch', (e: ReceiverEpochStats) => {
    stats?.write(e);
    rates.add(0, e.wireBytes);
    if (e.full) log.info({ epoch: e.epoch, pages: e.pages }, 'full copy committed');
  });
  session.on('fatal', (e: RwanError) => {
    fatal = e;
  });
  // hooks start in event order; a primary-lost hook only once the epoch being committed (if any) is
  // in the replica, so that the hook sees it whole
  let hookStarted = Promise.resolve();
  const startHook = async (ev: string, cmd: string) => {
    if (ev === 'primary-lost') await session.drained();
    const child = spawn(cmd, {
      shell: true,
      stdio: ['ignore', 'inherit', 'inherit'],
      env: {
        ...process.env,
        REMUS_WAN_EVENT: ev,
        REMUS_WAN_LAST_EPOCH: String(session.lastEpoch ?? ''),
        REMUS_WAN_SESSION: session.session ?? '',
        REMUS_WAN_STORE: s.store,
        REMUS_WAN_REPLICA: session.store.replicaPath,
      },
    });
    child.on('exit', (code) => log.info({ event: ev, hook: cmd, exitCode: code }, 'hook finished'));
    child.on('error', (err) => log.error({ event: ev, hook: cmd, err: err.message }, 'hook failed'));
  };
  session.on('detector', (ev: string) => {
    const cmd = s.onPrimaryLost;
    if (cmd) {
      hookStarted = hookStarted
        .then(() => startHook(ev, cmd))
        .catch((err: Error) => log.error({ event: ev, hook: cmd, err: err.message }, 'hook failed'));
    }
  });
  const status = () => ({
    role: 'receive',
    name: s.name,
    session: session.session,
    primary: session.detectorState,
    promoted: session.promoted,
    lastCommittedEpoch: session.lastEpoch,
    connectedChannels: session.connectedChannels,
    peers: session.peers,
    rttMs: session.rttMs ?? null,
    wireBytesPerSecond: rates.get().wireBytesPerSecond,
    counters: session.counters,
    refusals: session.refusals,
    store: { dir: s.store, ...session.store.state }, // the session reopens its store after a rejected epoch
    eventLoopDelay: loop.snapshot(),
  });
  // the endpoint before the listener: a receiver that cannot serve it accepts no primary
  const http = s.metrics
    ? await serveHttp(s.metrics, receiverMetrics(session, loop), status, promoteHandler(session), log)
    : undefined;
  const listener = await closingOnFailure(http, () =>
    listen(
      security,
      { host: s.listen.host, port: s.listen.port, handshakeTimeoutMs: s.handshakeTimeoutMs },
      (socket, peer) => {
        socket.on('error', () => undefined); // the channel reports it
        session.accept(socket, peer);
      },
      (err, remote) => {
        session.noteRefusal(String(err.details.reason ?? err.code));
        log.warn(
          { remote, code: err.code, reason: err.details.reason, err: err.message },
          'connection refused',
        );
      },
    ),
  );
  log.info({ listen: `${s.listen.host}:${listener.port}`, security: s.security.kind }, 'listening');
  const stopped = new Promise<void>((resolve) => session.once('fatal', () => resolve()));
  const sig = await Promise.race([untilSignal(), stopped.then(() => 'fatal')]);
  log.info({ signal: sig }, 'stopping');
  await listener.close();
  await session.close();
  loop.stop();
  clearInterval(trim);
  http?.close();
  await stats?.close();
  if (fatal) return fatal.exitCode;
  return 0;
}
