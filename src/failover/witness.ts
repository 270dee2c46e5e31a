/**
 * The witness: a third site's arbiter between primary and backup. It answers two questions over HTTP:
 *
 *   GET  /v1/status           { token, primaryReachable }   can the witness reach the primary now
 *                                                          (a fresh TCP probe), and the fencing token
 *   POST /v1/promote          { token, site } → { granted, token, reason }
 *
 * A promotion is granted only when the witness itself cannot reach the primary (probed at that moment)
 * and the request carries exactly the next fencing token (current + 1): a backup that missed an earlier
 * promotion, or two backups racing, cannot both win. The token is written to its file (temporary file,
 * fsync, rename) before the answer is sent, so a witness restarted after granting remembers it.
 * Requests are handled one at a time.
 *
 * The primary asks `/v1/status` too: a token above its own means someone was promoted (it must not
 * announce again); a witness that answers with its token is what lets a fenced primary come back.
 *
 * No TLS yet: bind it to an address only the two sites reach (docs/failover.md).
 */
import { open, readFile, rename } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { RwanError } from '../errors.js';

export interface WitnessOptions {
  /** The primary's address to probe (its replication port, or any port it serves). */
  primary: { host: string; port: number };
  /** A TCP connect slower than this counts as unreachable, ms (default 1000). */
  probeTimeoutMs?: number;
  /** Where the fencing token is kept. */
  tokenFile: string;
}

export interface PromoteAnswer {
  granted: boolean;
  /** The token after the request (the new one when granted). */
  token: number;
  reason: string;
}

/** Whether a TCP connection to host:port opens within `timeoutMs`. */
export function tcpReachable(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** The token kept in `file` (0 when there is none). */
export async function readToken(file: string): Promise<number> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw new RwanError('RWAN_ERR_IO', `witness token file ${file}: ${(err as Error).message}`);
  }
  const n = Number(text.trim());
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RwanError(
      'RWAN_ERR_INVALID_INPUT',
      `witness token file ${file}: ${JSON.stringify(text.trim())} is not a token`,
    );
  }
  return n;
}

/** Write `token` durably: a temporary file, fsync, rename over the old one. */
export async function writeToken(file: string, token: number): Promise<void> {
  const tmp = `${file}.tmp`;
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(`${token}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
}

export class Witness {
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly o: Required<WitnessOptions>,
    private current: number,
  ) {}

  /** Read the token file (0 when there is none). */
  static async open(options: WitnessOptions): Promise<Witness> {
    const o = { probeTimeoutMs: 1000, ...options };
    return new Witness(o, await readToken(o.tokenFile));
  }

  /** The fencing token: promotions granted so far. */
  get token(): number {
    return this.current;
  }

  /** Probe the primary now. */
  primaryReachable(): Promise<boolean> {
    return tcpReachable(this.o.primary.host, this.o.primary.port, this.o.probeTimeoutMs);
  }

  /** Grant or refuse a promotion (see the file comment); one request at a time. */
  promote(request: { token: unknown; site: unknown }): Promise<PromoteAnswer> {
    const run = this.queue.then(() => this.decide(request));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async decide(request: { token: unknown; site: unknown }): Promise<PromoteAnswer> {
    const { token, site } = request;
    const refuse = (reason: string) => ({ granted: false, token: this.current, reason });
    if (!Number.isSafeInteger(token) || (token as number) < 1)
      return refuse('the token must be a positive integer');
    if (typeof site !== 'string' || !/^[\w.:-]{1,64}$/.test(site))
      return refuse('the site must be a short name');
    if (token !== this.current + 1) {
      return refuse(
        `token ${token} is not the next one (${this.current + 1}): this site missed a promotion, or lost a race`,
      );
    }
    if (await this.primaryReachable())
      return refuse('the witness reaches the primary: a partition, not a failure');
    await writeToken(this.o.tokenFile, token);
    this.current = token;
    return {
      granted: true,
      token,
      reason: `granted to ${site}: the witness cannot reach the primary either`,
    };
  }
}

/** Largest request body read, bytes. */
const MAX_BODY = 4096;

function reply(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(`${JSON.stringify(body)}\n`);
}

async function body(req: IncomingMessage): Promise<unknown> {
  let text = '';
  for await (const chunk of req) {
    text += chunk;
    if (text.length > MAX_BODY) throw new Error('request too large');
  }
  return JSON.parse(text);
}

/** The witness's HTTP server (not listening yet). */
export function witnessServer(w: Witness): Server {
  return createServer((req, res) => {
    const route = `${req.method} ${req.url}`;
    if (route === 'GET /v1/status') {
      void w
        .primaryReachable()
        .then((primaryReachable) => reply(res, 200, { token: w.token, primaryReachable }));
      return;
    }
    if (route === 'POST /v1/promote') {
      body(req)
        .then((b) => w.promote((b ?? {}) as { token: unknown; site: unknown }))
        .then((answer) => reply(res, answer.granted ? 200 : 409, answer))
        .catch((err: Error) =>
          reply(res, 400, { granted: false, token: w.token, reason: `bad request: ${err.message}` }),
        );
      return;
    }
    reply(res, 404, { error: `no ${route}` });
  });
}

/** What a site learns from asking the witness (the controller's observation fields). */
export interface WitnessView {
  witnessUp: boolean;
  witnessSeesPrimary: boolean | null;
  knownToken: number | null;
}

/** Ask the witness at `url` (http://host:port); a witness that does not answer in time is down. */
export async function askWitness(url: string, timeoutMs: number): Promise<WitnessView> {
  try {
    const r = await fetch(`${url}/v1/status`, { signal: AbortSignal.timeout(timeoutMs) });
    const b = (await r.json()) as { token?: unknown; primaryReachable?: unknown };
    if (!r.ok || !Number.isSafeInteger(b.token) || typeof b.primaryReachable !== 'boolean') {
      return { witnessUp: false, witnessSeesPrimary: null, knownToken: null };
    }
    return { witnessUp: true, witnessSeesPrimary: b.primaryReachable, knownToken: b.token as number };
  } catch {
    return { witnessUp: false, witnessSeesPrimary: null, knownToken: null };
  }
}

/** Ask the witness to grant promotion `token` to `site`; a witness that does not answer refuses. */
export async function requestPromotion(
  url: string,
  token: number,
  site: string,
  timeoutMs: number,
): Promise<PromoteAnswer> {
  try {
    const r = await fetch(`${url}/v1/promote`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token, site }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const b = (await r.json()) as Partial<PromoteAnswer>;
    return {
      granted: r.status === 200 && b.granted === true,
      token: Number.isSafeInteger(b.token) ? (b.token as number) : token - 1,
      reason: typeof b.reason === 'string' ? b.reason : `HTTP ${r.status}`,
    };
  } catch (err) {
    return {
      granted: false,
      token: token - 1,
      reason: `the witness did not answer: ${(err as Error).message}`,
    };
  }
}
