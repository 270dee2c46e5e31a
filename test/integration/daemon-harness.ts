/**
 * What test/integration/daemon.test.ts needs to drive the real daemons (dist/, as shipped): child
 * processes with their output in log files, free loopback ports, the daemons' /status, the stats
 * files, bounded waits that say what they waited for, a seeded random source, and a TCP relay whose
 * link can be cut and restored.
 *
 *   sender ──TLS──► Relay (127.0.0.1:R) ──► receiver (127.0.0.1:P)
 *                   cut(ms): every connection through it destroyed, new ones reset for ms
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { freePorts } from '../../tools/bench/harness.js';

/** The project's root directory. */
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** The `remus-wan` CLI, compiled. */
export const WAN = join(ROOT, 'dist/src/cli/wan.js');
/** The workload writer, compiled. */
export const WRITER = join(ROOT, 'dist/tools/workload/writer.js');

/**
 * Throws unless dist/ holds a compiled file for every source file of src/ and tools/workload/ (what the
 * processes run), none older than its source: a stale build would test old code.
 */
export function assertFreshBuild(): void {
  const stale: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, e.name);
      if (e.isDirectory()) walk(path);
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) {
        const rel = relative(ROOT, path);
        const out = join(ROOT, 'dist', rel.replace(/\.ts$/, '.js'));
        if (!existsSync(out) || statSync(out).mtimeMs < statSync(path).mtimeMs) stale.push(rel);
      }
    }
  };
  walk(join(ROOT, 'src'));
  walk(join(ROOT, 'tools/workload'));
  if (stale.length > 0) {
    throw new Error(
      `dist/ is missing or older than ${stale.length} source file(s) (${stale.slice(0, 5).join(', ')}…): run \`npm run build\` first`,
    );
  }
}

/** How a child process ended. */
export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A child process whose standard output and error go to one log file. */
export class Proc {
  readonly child: ChildProcess;
  readonly exited: Promise<Exit>;
  private exit: Exit | undefined;

  constructor(
    readonly name: string,
    readonly args: readonly string[],
    readonly logPath: string,
    cwd: string,
    o: { command?: string; env?: NodeJS.ProcessEnv } = {},
  ) {
    const fd = openSync(logPath, 'a');
    try {
      this.child = spawn(o.command ?? process.execPath, args, {
        cwd,
        stdio: ['ignore', fd, fd],
        ...(o.env === undefined ? {} : { env: o.env }),
      });
    } finally {
      closeSync(fd);
    }
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
      this.child.once('error', () => {
        this.exit = { code: null, signal: null };
        resolve(this.exit);
      });
    });
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error(`${this.name}: not started`);
    return this.child.pid;
  }

  /** Still running. */
  get alive(): boolean {
    return this.exit === undefined;
  }

  /** How it ended, if it did. */
  get exitStatus(): Exit | undefined {
    return this.exit;
  }

  /** The log so far. */
  log(): string {
    try {
      return readFileSync(this.logPath, 'utf8');
    } catch {
      return '';
    }
  }

  /** The log's pino lines (JSON objects) so far; other lines are left out. */
  logRecords(): Array<Record<string, unknown>> {
    const out: Array<Record<string, unknown>> = [];
    for (const line of this.log().split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        out.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // a line being written
      }
    }
    return out;
  }

  /** Send a signal (nothing when it has already ended). */
  signal(sig: NodeJS.Signals): void {
    if (this.alive) this.child.kill(sig);
  }

  /** kill -9, and wait until it is gone. */
  async kill9(): Promise<Exit> {
    this.signal('SIGKILL');
    return this.exited;
  }

  /** SIGTERM, then SIGKILL if it is still running after `graceMs`. */
  async stop(graceMs = 8000): Promise<Exit> {
    if (!this.alive) return this.exited;
    this.signal('SIGTERM');
    const timer = setTimeout(() => this.signal('SIGKILL'), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Waits until the log has a line matching `re`. */
  async waitForLine(re: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    const found: { m?: RegExpMatchArray } = {};
    await waitFor(`${this.name}: a line matching ${re}`, timeoutMs, () => {
      const m = this.log().match(re);
      if (m) {
        found.m = m;
        return true;
      }
      if (!this.alive) throw new Error(`${this.name} exited (${JSON.stringify(this.exit)}) before ${re}`);
      return false;
    });
    return found.m as RegExpMatchArray;
  }

  /** The last lines of the log, for a failure report. */
  tail(lines = 30): string {
    return this.log().trimEnd().split('\n').slice(-lines).join('\n');
  }
}

/** Every process a test started: killed at its end if still running. */
export class Procs {
  readonly all: Proc[] = [];

  constructor(private readonly dir: string) {}

  /**
   * Start `node <args>` (or `command <args>`), its output in `<dir>/<name>.log` (appended: a restarted
   * daemon adds to it).
   */
  start(name: string, args: readonly string[], o: { command?: string; env?: NodeJS.ProcessEnv } = {}): Proc {
    const p = new Proc(name, args, join(this.dir, `${name}.log`), this.dir, o);
    this.all.push(p);
    return p;
  }

  /** kill -9 what still runs (only the pids started here), then wait for each to be gone. */
  async killAll(): Promise<void> {
    for (const p of this.all) {
      if (!p.alive) continue;
      p.signal('SIGCONT'); // a writer may be left stopped by a sender killed during a capture
      p.signal('SIGKILL');
    }
    await Promise.all(this.all.map((p) => p.exited));
  }

  /** Log tails of every process, for a failure report. */
  report(lines = 25): string {
    return this.all
      .map(
        (p) =>
          `── ${p.name} (pid ${p.child.pid}, ${p.alive ? 'running' : `exit ${JSON.stringify(p.exitStatus)}`}) ${p.logPath}\n${p.tail(lines)}`,
      )
      .join('\n');
  }
}

/**
 * Polls `cond` (every `everyMs`) until it holds; rejects after `timeoutMs` with what was awaited and,
 * if given, `detail()` (the state at that moment).
 */
export async function waitFor(
  what: string,
  timeoutMs: number,
  cond: () => boolean | Promise<boolean>,
  detail?: () => string | Promise<string>,
  everyMs = 50,
): Promise<void> {
  const t0 = performance.now();
  for (;;) {
    if (await cond()) return;
    if (performance.now() - t0 > timeoutMs) {
      const more = detail ? `: ${await detail()}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${more}`);
    }
    await sleep(everyMs);
  }
}

/** GET a daemon's /status; undefined when it does not answer (not up yet, or gone). */
export async function status<T = Record<string, unknown>>(port: number): Promise<T | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/status`, { signal: AbortSignal.timeout(2000) });
    if (!res.ok) return undefined;
    return (await res.json()) as T;
  } catch {
    return undefined;
  }
}

/** What the receiver's /status says (the fields the tests read). */
export interface ReceiverStatus {
  session: string | null;
  primary: 'waiting' | 'alive' | 'suspect' | 'lost';
  lastCommittedEpoch: number | null;
  connectedChannels: number;
  counters: { epochs: number; resumes: number; refused: number; digestFailures: number };
  store: { committedEpoch: number | null; appliedEpoch: number | null; sessionId: string | null };
}

/** What the sender's /status says (the fields the tests read). */
export interface SenderStatus {
  state: 'connecting' | 'replicating' | 'reconnecting' | 'stopped';
  lastAckedEpoch: number | null;
  epochsInFlight: number;
  counters: { epochsAcked: number; fullEpochs: number; reconnects: number; resentEpochs: number };
}

/** One line of the sender's stats file. */
export interface TxLine {
  epoch: number;
  full: boolean;
  digest?: string;
}

/** One line of the receiver's stats file. */
export interface RxLine {
  epoch: number;
  full: boolean;
  replicaDigest?: string;
}

/**
 * The JSON lines of a stats file. With `tornTail`, a last line that does not parse is left out (the
 * writer was killed with -9 while appending it); any other bad line throws.
 */
export function readJsonl<T>(path: string, o: { tornTail?: boolean } = {}): T[] {
  if (!existsSync(path)) return [];
  const lines = readFileSync(path, 'utf8').split('\n');
  const out: T[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    try {
      out.push(JSON.parse(line) as T);
    } catch (err) {
      const last = lines.slice(i + 1).every((l) => l.trim() === '');
      if (!(o.tornTail && last)) throw new Error(`${path}:${i + 1}: not JSON: ${(err as Error).message}`);
    }
  });
  return out;
}

export { prng as seededRandom } from '../../tools/gen-trace.js';
/** A small seeded random source in [0, 1), so a failing run can be replayed with its seed. */
export { freePorts };

/**
 * A TCP relay on 127.0.0.1 to a target port: bytes forwarded both ways, unchanged (TLS runs end to
 * end through it). `cut(ms)` destroys every connection through it and, for `ms`, resets each new one
 * as soon as it is accepted; then it forwards again.
 */
export class Relay {
  private readonly pairs = new Set<{ a: Socket; b: Socket }>();
  private cutUntil = 0;
  private readonly server: Server;
  /** Connections accepted and forwarded, and accepted during a cut and reset. */
  readonly counts = { forwarded: 0, refused: 0, cut: 0 };

  private constructor(
    private readonly target: number,
    server: Server,
    private readonly delayMs = 0,
  ) {
    this.server = server;
  }

  /** Listen on a free port of 127.0.0.1, forwarding to `targetPort` (each way `delayMs` late). */
  static async start(targetPort: number, o: { delayMs?: number } = {}): Promise<Relay> {
    const server = createServer({ noDelay: true });
    const relay = new Relay(targetPort, server, o.delayMs ?? 0);
    server.on('connection', (a) => relay.onConnection(a));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
    return relay;
  }

  get port(): number {
    return (this.server.address() as { port: number }).port;
  }

  /** A link cut is in progress. */
  get isCut(): boolean {
    return performance.now() < this.cutUntil;
  }

  private onConnection(a: Socket): void {
    a.on('error', () => undefined);
    if (this.isCut) {
      this.counts.refused++;
      a.resetAndDestroy();
      return;
    }
    const b = netConnect({ host: '127.0.0.1', port: this.target, noDelay: true });
    b.on('error', () => undefined);
    const pair = { a, b };
    this.pairs.add(pair);
    this.counts.forwarded++;
    if (this.delayMs > 0) {
      // a delay line: every byte leaves delayMs after it came, in order (timers of one delay fire
      // in the order they were set)
      const late = (from: Socket, to: Socket) =>
        from.on('data', (d: Buffer) => setTimeout(() => to.writable && to.write(d), this.delayMs));
      late(a, b);
      late(b, a);
    } else {
      a.pipe(b);
      b.pipe(a);
    }
    const drop = () => {
      this.pairs.delete(pair);
      a.destroy();
      b.destroy();
    };
    a.once('close', drop);
    b.once('close', drop);
  }

  /** Destroy every connection now and reset new ones for `ms`. */
  cut(ms: number): void {
    this.cutUntil = performance.now() + ms;
    for (const { a, b } of [...this.pairs]) {
      this.counts.cut++;
      a.resetAndDestroy();
      b.resetAndDestroy();
    }
    this.pairs.clear();
  }

  /** Stop listening and drop every connection. */
  async close(): Promise<void> {
    for (const { a, b } of this.pairs) {
      a.destroy();
      b.destroy();
    }
    this.pairs.clear();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/**
 * A plaintext receiver on loopback for the failover tests (`<name>-receiver`, dead time `deadTime`),
 * its /status at `rxUrl`; `port` is where a sender connects.
 */
export async function startPlainReceiver(
  procs: Procs,
  dir: string,
  name: string,
  deadTime = '1s',
): Promise<{ receiver: Proc; rxUrl: string; port: number }> {
  const [port, rxHttp] = (await freePorts(2)) as [number, number];
  const receiver = procs.start(`${name}-receiver`, [
    WAN,
    ...['receive', '--listen', `127.0.0.1:${port}`, '--store', join(dir, `${name}-store`), '--insecure'],
    ...['--dead-time', deadTime, '--metrics', `127.0.0.1:${rxHttp}`],
  ]);
  return { receiver, rxUrl: `http://127.0.0.1:${rxHttp}`, port };
}

/** A plaintext sender (`<name>-sender`, 50 ms epochs) of a small image to `port`, its /status at `txUrl`. */
export async function startPlainSender(
  procs: Procs,
  dir: string,
  name: string,
  port: number,
): Promise<{ sender: Proc; txUrl: string; txPort: number }> {
  const [txPort] = (await freePorts(1)) as [number];
  const image = join(dir, `${name}.img`);
  writeFileSync(image, Buffer.alloc(128 * 4096, 3));
  const sender = procs.start(`${name}-sender`, [
    WAN,
    ...['send', '--connect', `127.0.0.1:${port}`, '--image', image, '--insecure', '--epoch', '50ms'],
    ...['--metrics', `127.0.0.1:${txPort}`],
  ]);
  return { sender, txUrl: `http://127.0.0.1:${txPort}`, txPort };
}
