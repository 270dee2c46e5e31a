/**
 * ExaBGP 4.x's process API, from the side of the program ExaBGP runs (`process NAME { run …; encoder
 * json; }`): commands go out as lines on our stdout; ExaBGP writes to our stdin JSON events (one per
 * line: neighbor state changes, notifications) and, with `exabgp.api.ack` (its default), a `done` or
 * `error` line after each command.
 *
 * The same `command(line)` as the named-pipe client (exabgp-pipe.ts), so the controller drives
 * either. What differs:
 * - `neighborUp(fn)` is told each time a BGP session comes up (a `state` event with `"state": "up"`),
 *   for the controller to send its routes again: ExaBGP forgets API routes when a session drops.
 * - ExaBGP respawns a program that exits and, after five quick deaths, shuts itself down: the runner
 *   must not exit on a failed command. When ExaBGP goes away, stdin ends: `ended` resolves.
 *
 * - A command that times out still gets its answer later: the next answer read is taken for it.
 *
 * Errors: RwanError RWAN_ERR_EXABGP with `details.reason`: `error`, `shutdown`, `timeout`, `io`.
 */
import type { Readable, Writable } from 'node:stream';
import { exabgpError, TERMINATORS } from './exabgp-pipe.js';
import { commandLine } from './routes.js';

/** A JSON event from ExaBGP (only the fields read here are typed). */
export interface ExaBgpEvent {
  type?: string;
  neighbor?: { address?: { local?: string; peer?: string }; state?: string; reason?: string };
  [key: string]: unknown;
}

interface Waiter {
  command: string;
  resolve: () => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** The process-API side of a program ExaBGP runs. */
export class ExaBgpProcess {
  private partial = '';
  private readonly waiting: Waiter[] = [];
  private queue: Promise<unknown> = Promise.resolve();
  private readonly upListeners: Array<(peer: string) => void> = [];
  private readonly eventListeners: Array<(e: ExaBgpEvent) => void> = [];
  private done = false;
  /** Acks still owed for commands that timed out: ExaBGP answers in order, so the next ones are theirs. */
  private lateAcks = 0;
  /** Resolves when ExaBGP closes our stdin (it stopped, or dropped this program). */
  readonly ended: Promise<void>;

  /**
   * @param input ExaBGP's side: our stdin
   * @param output our stdout (nothing else may write to it: every line is a command to ExaBGP)
   */
  constructor(
    private readonly input: Readable,
    private readonly output: Writable,
    private readonly timeoutMs = 2000,
  ) {
    input.setEncoding('utf8');
    input.on('data', (chunk: string) => this.onData(chunk));
    this.ended = new Promise((resolve) => {
      const end = () => {
        if (this.done) return;
        this.done = true;
        for (const w of this.waiting.splice(0)) {
          clearTimeout(w.timer);
          w.reject(exabgpError('shutdown', `ExaBGP closed the process API before answering: ${w.command}`));
        }
        resolve();
      };
      input.on('end', end);
      input.on('close', end);
      input.on('error', end);
    });
  }

  /** Stop reading ExaBGP (so that a process whose work is done can exit): commands then fail. */
  close(): void {
    this.input.destroy();
  }

  /** Calls `fn` with the peer's address each time a BGP session comes up. */
  neighborUp(fn: (peer: string) => void): void {
    this.upListeners.push(fn);
  }

  /** Calls `fn` with every JSON event. */
  onEvent(fn: (e: ExaBgpEvent) => void): void {
    this.eventListeners.push(fn);
  }

  /**
   * Send one command line and wait for ExaBGP's `done`.
   * @throws RwanError RWAN_ERR_EXABGP (error, shutdown, timeout, io)
   */
  command(line: string): Promise<string[]> {
    const run = this.queue.then(() => this.exchange(line));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private exchange(line: string): Promise<string[]> {
    try {
      commandLine(line);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.done) return Promise.reject(exabgpError('shutdown', `ExaBGP is gone: ${line}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const at = this.waiting.findIndex((w) => w.timer === timer);
        if (at >= 0) this.waiting.splice(at, 1);
        this.lateAcks++;
        reject(
          exabgpError('timeout', `no answer from ExaBGP within ${this.timeoutMs} ms to: ${line}`, {
            command: line,
          }),
        );
      }, this.timeoutMs);
      this.waiting.push({ command: line, resolve: () => resolve([]), reject, timer });
      this.output.write(`${line}\n`, (err) => {
        if (err) reject(exabgpError('io', `writing to ExaBGP: ${err.message}`));
      });
    });
  }

  private onData(chunk: string): void {
    const parts = (this.partial + chunk).split('\n');
    this.partial = parts.pop() ?? '';
    for (const raw of parts) {
      const line = raw.trim();
      if (line === '') continue;
      if (TERMINATORS.has(line)) {
        if (this.lateAcks > 0) {
          this.lateAcks--; // the answer to a command that timed out
          continue;
        }
        const w = this.waiting.shift();
        if (w === undefined) continue; // an answer to nothing of ours (ack of a command before a restart)
        clearTimeout(w.timer);
        if (line === 'done') w.resolve();
        else
          w.reject(exabgpError(line, `ExaBGP answered "${line}" to: ${w.command}`, { command: w.command }));
        continue;
      }
      let e: ExaBgpEvent;
      try {
        e = JSON.parse(line) as ExaBgpEvent;
      } catch {
        continue; // text encoder output or noise: not for us
      }
      for (const fn of this.eventListeners) fn(e);
      if (e.type === 'state' && e.neighbor?.state === 'up') {
        const peer = e.neighbor.address?.peer ?? '';
        for (const fn of this.upListeners) fn(peer);
      }
    }
  }
}
