/**
 * Tools of test/integration/bad-peers.test.ts: the daemons as child processes (their JSON log lines
 * collected), what /proc says about a process (resident memory, its open connections on a port), and
 * probes that talk to the receiver's port and decode what it answers.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import type { Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { FrameDecoder } from '../../src/protocol/decoder.js';
import {
  type ErrorFrame,
  type Frame,
  FrameType,
  HEADER_SIZE,
  MAGIC_0,
  MAGIC_1,
} from '../../src/protocol/frames.js';

/** One JSON log line of a daemon (pino). */
export type LogLine = Record<string, unknown> & { msg?: string };

/** A child process started by the test, with its output collected. */
export interface Proc {
  readonly child: ChildProcess;
  readonly pid: number;
  /** JSON lines from stderr (the daemons' logs). */
  readonly logs: LogLine[];
  /** Lines from stdout. */
  readonly out: string[];
  /** Lines from stderr that are not JSON. */
  readonly errText: string[];
  /** Resolves with the exit code (or the signal's name) once the process ended. */
  readonly exited: Promise<number | string>;
  /** The first log line (past or future, from index `from` of `logs`) that `pred` accepts. */
  waitLog(pred: (l: LogLine) => boolean, ms: number, what: string, from?: number): Promise<LogLine>;
  /**
   * Like {@link waitLog}, but each line is taken once: a line an earlier `takeLog` returned is skipped
   * (a refusal of an earlier connection from the same local port is not this connection's).
   */
  takeLog(pred: (l: LogLine) => boolean, ms: number, what: string, from?: number): Promise<LogLine>;
  /** The first stdout line (past or future) that `re` matches. */
  waitOut(re: RegExp, ms: number): Promise<RegExpMatchArray>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with how it ended. Only this process is signalled. */
  stop(graceMs?: number): Promise<number | string>;
}

/** Start `node <args>` in `cwd`. */
export function startNode(args: string[], cwd: string): Proc {
  const child = spawn(process.execPath, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: LogLine[] = [];
  const out: string[] = [];
  const errText: string[] = [];
  const taken = new Set<LogLine>();
  const waiters = new Set<() => void>();
  const wake = () => {
    for (const w of [...waiters]) w();
  };
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    out.push(line);
    wake();
  });
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (line) => {
    try {
      logs.push(JSON.parse(line) as LogLine);
    } catch {
      errText.push(line);
    }
    wake();
  });
  let ended = false;
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => {
      ended = true;
      resolve(code ?? signal ?? 'unknown');
      wake();
    });
  });
  const waitFor = <T>(find: () => T | undefined, ms: number, what: string): Promise<T> =>
    new Promise((resolve, reject) => {
      const check = () => {
        const hit = find();
        if (hit !== undefined) {
          done();
          resolve(hit);
        } else if (ended) {
          done();
          reject(new Error(`${what}: the process ended (${errText.slice(-5).join(' | ')})`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${what}: not within ${ms} ms`));
      }, ms);
      const done = () => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start node ${args.join(' ')}`);
  return {
    child,
    pid,
    logs,
    out,
    errText,
    exited,
    waitLog: (pred, ms, what, from = 0) => waitFor(() => logs.slice(from).find(pred), ms, what),
    takeLog: async (pred, ms, what, from = 0) => {
      const line = await waitFor(() => logs.slice(from).find((l) => !taken.has(l) && pred(l)), ms, what);
      taken.add(line);
      return line;
    },
    waitOut: (re, ms) =>
      waitFor(
        () => {
          for (const l of out) {
            const m = re.exec(l);
            if (m) return m;
          }
          return undefined;
        },
        ms,
        `stdout ${re}`,
      ),
    stop: async (graceMs = 5000) => {
      if (!ended) child.kill('SIGTERM');
      const timer = setTimeout(() => {
        if (!ended) child.kill('SIGKILL');
      }, graceMs);
      const how = await exited;
      clearTimeout(timer);
      return how;
    },
  };
}

/** Poll `cond` every `everyMs` until it holds; rejects after `ms` with `what`. */
export async function until(
  cond: () => boolean | Promise<boolean>,
  ms: number,
  what: string,
  everyMs = 50,
): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    if (await cond()) return;
    if (Date.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A field of /proc/PID/status in bytes (`VmRSS`, `VmHWM`). */
export function procMemory(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}

/**
 * TCP connections the process holds open on local port `port` (its listening socket not counted):
 * the sockets among its file descriptors whose /proc/net/tcp{,6} line has that local port.
 */
export function openConnections(pid: number, port: number): number {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m?.[1]) inodes.add(m[1]);
    } catch {
      // closed while listed
    }
  }
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  let n = 0;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      const local = f[1];
      const state = f[3];
      const inode = f[9];
      if (!local || !inode || state === '0A') continue; // 0A: LISTEN
      if (local.endsWith(`:${hexPort}`) && inodes.has(inode)) n++;
    }
  }
  return n;
}

/** GET a JSON document. */
export async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return (await res.json()) as T;
}

/** The value of an unlabelled metric in a Prometheus text exposition. */
export async function getMetric(base: string, name: string): Promise<number> {
  const res = await fetch(new URL('/metrics', base));
  const text = await res.text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  if (!m) throw new Error(`no metric ${name} at ${base}`);
  return Number(m[1]);
}

/** A frame header announcing `payloadLength` bytes of a frame of `type` (header version `version`). */
export function frameHeader(type: number, payloadLength: number, version = 1): Buffer {
  const h = Buffer.alloc(HEADER_SIZE);
  h[0] = MAGIC_0;
  h[1] = MAGIC_1;
  h[2] = version;
  h[3] = type;
  h.writeUInt32LE(payloadLength >>> 0, 8);
  return h;
}

/**
 * The receiving end of a probe connection: decodes what the receiver sends into frames, notes when
 * the connection closes, and keeps the raw bytes for a peer that sends no frames at all.
 */
export class Probe {
  readonly frames: Frame[] = [];
  readonly raw: Buffer[] = [];
  decodeError: Error | undefined;
  /** performance.now() when the connection closed, or undefined while it is open. */
  closedAt: number | undefined;
  readonly closed: Promise<number>;
  private readonly decoder = new FrameDecoder();
  private readonly waiters = new Set<() => void>();

  /** The local port of the connection (kept: node forgets it once the socket is destroyed). */
  readonly localPort: number | undefined;

  constructor(readonly socket: Socket) {
    this.localPort = socket.localPort;
    socket.on('error', () => undefined); // a reset after the receiver's ERROR is expected
    socket.on('data', (chunk: Buffer) => {
      this.raw.push(chunk);
      if (this.decodeError) return;
      try {
        this.decoder.write(chunk);
        for (const f of this.decoder.readAll()) this.frames.push(f);
      } catch (err) {
        this.decodeError = err as Error;
      }
      this.wake();
    });
    this.closed = new Promise((resolve) => {
      socket.once('close', () => {
        this.closedAt = performance.now();
        this.wake();
        resolve(this.closedAt);
      });
    });
  }

  /** Frames the receiver sent other than HEARTBEATs (its channel beats from the start). */
  get significant(): Frame[] {
    return this.frames.filter((f) => f.type !== FrameType.HEARTBEAT);
  }

  /** The first ERROR frame, once it arrived; rejects when the connection closes without one or after `ms`. */
  errorFrame(ms: number): Promise<ErrorFrame> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const e = this.frames.find((f): f is ErrorFrame => f.type === FrameType.ERROR);
        if (e) {
          done();
          resolve(e);
        } else if (this.closedAt !== undefined) {
          done();
          reject(
            new Error(
              `closed without an ERROR frame (frames: ${this.frames.map((f) => f.type).join(',')}; ${
                this.decodeError?.message ?? 'no decode error'
              })`,
            ),
          );
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no ERROR frame within ${ms} ms`));
      }, ms);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Resolves with the close time; rejects if the connection is still open after `ms`. */
  closedWithin(ms: number): Promise<number> {
    return Promise.race([
      this.closed,
      new Promise<number>((_, reject) =>
        setTimeout(() => reject(new Error(`still open after ${ms} ms`)), ms).unref(),
      ),
    ]);
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }
}
