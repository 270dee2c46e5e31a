/**
 * ExaBGP 4.x's named pipes (its CLI): commands into `<pipename>.in`, answers out of `<pipename>.out`,
 * each ending with a `done`, `error` or `shutdown` line.
 *
 * What can go wrong, and what this does about it (reference: exabgp-lab/README.md):
 * - ExaBGP never creates the pipes: a missing one, or a path that is not a FIFO, is an error naming it.
 * - Writing into a FIFO nobody reads blocks forever: `.in` is opened O_WRONLY|O_NONBLOCK, which fails
 *   at once (ENXIO) when ExaBGP is not running, and a write that cannot go through within the timeout
 *   is an error too. Nothing here can hang.
 * - Answers to commands whose writer did not read them are queued by ExaBGP and handed to the next
 *   reader: on opening, this sends `version` and drops every line before its answer
 *   (`exabgp 4.2.21`, `done`), so the answers read afterwards are this client's. `.out` is kept open
 *   (O_RDONLY|O_NONBLOCK needs no writer) for the client's life: run one client per pipe name.
 * - Each command waits for its terminator, with a timeout; commands are sent one at a time.
 *
 * Errors: RwanError RWAN_ERR_EXABGP with `details.reason`: `missing`, `not-fifo`, `not-running`,
 * `error` (ExaBGP answered `error`), `shutdown`, `timeout`, `io`.
 */
import { closeSync, constants, lstatSync, openSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { RwanError } from '../errors.js';
import { commandLine } from './routes.js';

/** Where ExaBGP 4.2 looks for `<pipename>.in` and `.out`, in its order (its root folder's aside). */
export function pipeDirectories(uid = process.getuid?.() ?? 0): string[] {
  return ['/run/exabgp', `/run/${uid}`, '/run', '/var/run/exabgp', `/var/run/${uid}`, '/var/run'];
}

/** The first directory holding `<pipename>.in`, as ExaBGP would pick it; undefined when none does. */
export function findPipes(
  pipename = 'exabgp',
  dirs = pipeDirectories(),
): { in: string; out: string } | undefined {
  for (const d of dirs) {
    const p = { in: join(d, `${pipename}.in`), out: join(d, `${pipename}.out`) };
    try {
      lstatSync(p.in);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

export interface PipeOptions {
  /** Path of `<pipename>.in` (commands). */
  in: string;
  /** Path of `<pipename>.out` (answers). */
  out: string;
  /** Longest wait for a command's answer, ms (default 2000). */
  timeoutMs?: number;
}

/** Lines ExaBGP ends an answer with (both APIs). */
export const TERMINATORS: ReadonlySet<string> = new Set(['done', 'error', 'shutdown']);
/** How often the answer pipe is polled, ms. */
const POLL_MS = 1;

/** RWAN_ERR_EXABGP with `details.reason` (both APIs' errors). */
export function exabgpError(
  reason: string,
  message: string,
  details: Record<string, unknown> = {},
): RwanError {
  return new RwanError('RWAN_ERR_EXABGP', message, { details: { reason, ...details } });
}

/** Check that `path` is a FIFO. */
function checkFifo(path: string): void {
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw exabgpError(
        'missing',
        `ExaBGP pipe ${path} does not exist (ExaBGP does not create it: mkfifo it before starting ExaBGP)`,
        {
          path,
        },
      );
    }
    throw exabgpError('io', `ExaBGP pipe ${path}: ${(err as Error).message}`, { path });
  }
  if (!st.isFIFO()) throw exabgpError('not-fifo', `ExaBGP pipe ${path} is not a named pipe (FIFO)`, { path });
}

/** A client of ExaBGP's named pipes. */
export class ExaBgpPipe {
  private readonly buf = Buffer.alloc(64 * 1024);
  /** Bytes read from `.out` that do not yet end a line. */
  private partial = '';
  /** Whole lines read and not yet consumed. */
  private lines: string[] = [];
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;
  /** ExaBGP's answer to `version` (e.g. `exabgp 4.2.21`). */
  version = '';

  private constructor(
    private readonly o: Required<PipeOptions>,
    private readonly inFd: number,
    private readonly outFd: number,
  ) {}

  /**
   * Check both pipes, open them without blocking, and synchronise with ExaBGP (`version`).
   * @throws RwanError RWAN_ERR_EXABGP (missing, not-fifo, not-running, timeout, io)
   */
  static async open(options: PipeOptions): Promise<ExaBgpPipe> {
    const o = { timeoutMs: 2000, ...options };
    checkFifo(o.in);
    checkFifo(o.out);
    let outFd: number;
    try {
      outFd = openSync(o.out, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (err) {
      throw exabgpError('io', `ExaBGP pipe ${o.out}: ${(err as Error).message}`, { path: o.out });
    }
    let inFd: number;
    try {
      inFd = openSync(o.in, constants.O_WRONLY | constants.O_NONBLOCK);
    } catch (err) {
      closeSync(outFd);
      if ((err as NodeJS.ErrnoException).code === 'ENXIO') {
        throw exabgpError(
          'not-running',
          `ExaBGP is not reading ${o.in} (not running, or running without this pipe name)`,
          {
            path: o.in,
          },
        );
      }
      throw exabgpError('io', `ExaBGP pipe ${o.in}: ${(err as Error).message}`, { path: o.in });
    }
    const pipe = new ExaBgpPipe(o, inFd, outFd);
    try {
      const lines = await pipe.exchange('version', (line) => /^exabgp \S+$/.test(line));
      pipe.version = lines.find((l) => /^exabgp /.test(l)) ?? '';
    } catch (err) {
      pipe.close();
      throw err;
    }
    return pipe;
  }

  /**
   * Send one command line (no newline; see routes.ts for building it) and wait for ExaBGP's `done`.
   * Resolves with the lines ExaBGP printed before it (a `show` command's output; none for
   * announce/withdraw).
   * @throws RwanError RWAN_ERR_EXABGP (error, shutdown, timeout, not-running, io)
   */
  command(line: string): Promise<string[]> {
    const run = this.queue.then(() => this.exchange(line));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Close both pipes (idempotent). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.inFd);
    closeSync(this.outFd);
  }

  /**
   * Write `line`, then read to its terminator. With `start`, lines before the first one `start`
   * accepts are someone else's (stale answers) and dropped.
   */
  private async exchange(line: string, start?: (line: string) => boolean): Promise<string[]> {
    if (this.closed) throw exabgpError('io', 'the ExaBGP pipe client is closed');
    commandLine(line);
    const deadline = performance.now() + this.o.timeoutMs;
    await this.write(`${line}\n`, deadline);
    const output: string[] = [];
    let started = start === undefined;
    for (;;) {
      const next = this.lines.shift() ?? (await this.readLine(deadline, line));
      if (!started) {
        started = start?.(next) === true;
        if (!started) continue; // a stale answer
      }
      if (TERMINATORS.has(next)) {
        if (next === 'done') return output;
        throw exabgpError(
          next,
          `ExaBGP answered "${next}" to: ${line}${output.length ? ` (${output.join(' | ')})` : ''}`,
          {
            command: line,
            output,
          },
        );
      }
      output.push(next);
    }
  }

  private async write(text: string, deadline: number): Promise<void> {
    const bytes = Buffer.from(text);
    let at = 0;
    while (at < bytes.length) {
      try {
        at += writeSync(this.inFd, bytes, at, bytes.length - at);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EPIPE')
          throw exabgpError('not-running', `ExaBGP stopped reading ${this.o.in}`, { path: this.o.in });
        if (code !== 'EAGAIN') throw exabgpError('io', `ExaBGP pipe ${this.o.in}: ${(err as Error).message}`);
        if (performance.now() > deadline) {
          throw exabgpError(
            'timeout',
            `ExaBGP did not take a command within ${this.o.timeoutMs} ms (${this.o.in} is full)`,
          );
        }
        await sleep(POLL_MS);
      }
    }
  }

  /** The next whole line from `.out`, polling until `deadline`. */
  private async readLine(deadline: number, command: string): Promise<string> {
    for (;;) {
      let n = 0;
      try {
        n = readSync(this.outFd, this.buf, 0, this.buf.length, null);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') {
          throw exabgpError('io', `ExaBGP pipe ${this.o.out}: ${(err as Error).message}`);
        }
      }
      if (n > 0) {
        const parts = (this.partial + this.buf.toString('utf8', 0, n)).split('\n');
        this.partial = parts.pop() ?? '';
        this.lines.push(...parts.map((l) => l.trim()).filter((l) => l.length > 0));
        const line = this.lines.shift();
        if (line !== undefined) return line;
        continue;
      }
      if (performance.now() > deadline) {
        throw exabgpError('timeout', `no answer from ExaBGP within ${this.o.timeoutMs} ms to: ${command}`, {
          command,
        });
      }
      await sleep(POLL_MS);
    }
  }
}

/**
 * The pipe client for a long-running controller: opened at the first command, and again after a
 * failure that may be ExaBGP's (not running, pipes missing, I/O, no answer in time, its shutdown;
 * not an `error` answer, which is about the command). So the controller keeps running while ExaBGP is
 * down: each command fails with its reason, for the controller to report and retry. `reopened` runs
 * after each open that follows a failure: an ExaBGP that restarted has forgotten every route sent to
 * it, which the controller then sends again.
 */
export class ReopeningPipe {
  private pipe: ExaBgpPipe | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private failed = false;
  private closed = false;

  constructor(
    private readonly open: () => Promise<ExaBgpPipe>,
    private readonly reopened: () => void = () => undefined,
  ) {}

  /** One command, after the ones before it (as {@link ExaBgpPipe.command}); opens the pipes if needed. */
  command(line: string): Promise<string[]> {
    const run = this.queue.then(() => this.send(line));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async send(line: string): Promise<string[]> {
    if (this.closed) throw exabgpError('io', 'the ExaBGP pipe client is closed');
    if (this.pipe === undefined) {
      try {
        this.pipe = await this.open();
      } catch (err) {
        this.failed = true;
        throw err;
      }
      if (this.failed) {
        this.failed = false;
        this.reopened();
      }
    }
    try {
      return await this.pipe.command(line);
    } catch (err) {
      if ((err as RwanError).details?.reason !== 'error') {
        this.pipe.close();
        this.pipe = undefined;
        this.failed = true;
      }
      throw err;
    }
  }

  close(): void {
    this.closed = true;
    this.pipe?.close();
    this.pipe = undefined;
  }
}
