/**
 * A small QMP (QEMU Machine Protocol) client over a UNIX socket.
 *
 *   connect ──> greeting {"QMP":…} ──> qmp_capabilities ──> execute(cmd) … ──> close()
 *
 * QMP is one JSON object per line. Replies carry the `id` we sent, so a reply that arrives after its
 * command timed out is dropped instead of answering the next command. Asynchronous `{"event":…}`
 * messages are ignored. Every failure is a {@link RwanError}: `RWAN_ERR_QMP` (connect, greeting,
 * error reply, malformed input, closed connection) or `RWAN_ERR_QMP_TIMEOUT`.
 */
import net from 'node:net';
import { RwanError } from '../errors.js';

/** Longest QMP line we buffer before giving up, in bytes (a `query-*` reply is a few KiB). */
export const QMP_MAX_LINE_BYTES = 1024 * 1024;

/** Default time limit for connecting, the greeting and each command, in milliseconds. */
export const QMP_DEFAULT_TIMEOUT_MS = 10_000;

const NEWLINE = 0x0a;
const GREETING = 'greeting';

/**
 * Splits a byte stream into lines (without the `\n`). Pure: feed chunks as they arrive, in any split.
 * A line longer than `maxLineBytes` is an `RWAN_ERR_QMP` error, raised before it is copied.
 */
export class LineDecoder {
  private readonly parts: Buffer[] = [];
  private pending = 0;

  /** @param maxLineBytes bytes a line may hold, excluding the newline */
  constructor(private readonly maxLineBytes: number = QMP_MAX_LINE_BYTES) {}

  /** Bytes held for a line not finished yet. */
  get bufferedBytes(): number {
    return this.pending;
  }

  /** Append a chunk; returns the lines it completes, in order. */
  write(chunk: Buffer): string[] {
    const lines: string[] = [];
    let start = 0;
    for (let nl = chunk.indexOf(NEWLINE, start); nl !== -1; nl = chunk.indexOf(NEWLINE, start)) {
      this.check(this.pending + nl - start);
      this.parts.push(chunk.subarray(start, nl));
      lines.push(Buffer.concat(this.parts).toString('utf8'));
      this.parts.length = 0;
      this.pending = 0;
      start = nl + 1;
    }
    if (start < chunk.length) {
      this.check(this.pending + chunk.length - start);
      this.parts.push(chunk.subarray(start));
      this.pending += chunk.length - start;
    }
    return lines;
  }

  private check(length: number): void {
    if (length > this.maxLineBytes) {
      throw new RwanError('RWAN_ERR_QMP', `QMP line longer than ${this.maxLineBytes} bytes`, {
        details: { limitBytes: this.maxLineBytes },
      });
    }
  }
}

/** Options of {@link QmpClient.connect}. */
export interface QmpConnectOptions {
  /** Time limit for connecting, the greeting and `qmp_capabilities`, in milliseconds. */
  timeoutMs?: number;
  /** Longest line accepted from QEMU, in bytes (default {@link QMP_MAX_LINE_BYTES}). */
  maxLineBytes?: number;
}

/** Options of {@link QmpClient.execute}. */
export interface QmpExecuteOptions {
  /** Time limit for the reply, in milliseconds (default {@link QMP_DEFAULT_TIMEOUT_MS}). */
  timeoutMs?: number;
}

/** The greeting QEMU sends first (`{"QMP": {"version": …, "capabilities": […]}}`). */
export interface QmpGreeting {
  version?: { qemu?: { major: number; minor: number; micro: number }; package?: string };
  capabilities?: string[];
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (err: RwanError) => void;
  timer: NodeJS.Timeout;
}

/** An open, negotiated QMP session. Create it with {@link QmpClient.connect}. */
export class QmpClient {
  /** The greeting QEMU sent when we connected. */
  greeting: QmpGreeting = {};
  private readonly pending = new Map<string, Pending>();
  private readonly decoder: LineDecoder;
  private nextId = 1;
  private failure: RwanError | undefined;

  private constructor(
    private readonly socket: net.Socket,
    readonly socketPath: string,
    maxLineBytes: number,
  ) {
    this.decoder = new LineDecoder(maxLineBytes);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) =>
      this.fail(
        new RwanError('RWAN_ERR_QMP', `QMP socket ${socketPath}: ${err.message}`, {
          cause: err,
          details: { socketPath, errno: err.code },
        }),
      ),
    );
    socket.on('close', () =>
      this.fail(
        new RwanError('RWAN_ERR_QMP', `QEMU closed the QMP connection ${socketPath} (did it exit?)`, {
          details: { socketPath },
        }),
      ),
    );
  }

  /**
   * Connect to a QMP UNIX socket, read the greeting and leave capabilities negotiation mode.
   * @param socketPath path of QEMU's `-qmp unix:PATH,server=on,wait=off` socket
   */
  static async connect(socketPath: string, options: QmpConnectOptions = {}): Promise<QmpClient> {
    const timeoutMs = options.timeoutMs ?? QMP_DEFAULT_TIMEOUT_MS;
    const socket = await openSocket(socketPath, timeoutMs);
    const client = new QmpClient(socket, socketPath, options.maxLineBytes ?? QMP_MAX_LINE_BYTES);
    try {
      const greeting = client.expect(
        GREETING,
        'greeting',
        timeoutMs,
        `no QMP greeting on ${socketPath} within ${timeoutMs} ms (is another client connected?)`,
      );
      client.greeting = (await greeting) as QmpGreeting;
      await client.execute('qmp_capabilities', undefined, { timeoutMs });
    } catch (err) {
      client.close();
      throw err;
    }
    return client;
  }

  /**
   * Run one command and return its `return` value.
   * @param command QMP command name (`query-version`)
   * @param args its `arguments` object, if any
   */
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    options: QmpExecuteOptions = {},
  ): Promise<T> {
    const id = `rwan-${this.nextId++}`;
    const timeoutMs = options.timeoutMs ?? QMP_DEFAULT_TIMEOUT_MS;
    const reply = this.expect(id, command, timeoutMs, `QMP ${command}: no reply within ${timeoutMs} ms`);
    if (!this.failure) {
      const message =
        args === undefined ? { execute: command, id } : { execute: command, arguments: args, id };
      this.socket.write(`${JSON.stringify(message)}\n`);
    }
    return reply as Promise<T>;
  }

  /** Close the connection; commands still waiting fail with `RWAN_ERR_QMP`. */
  close(): void {
    this.fail(
      new RwanError('RWAN_ERR_QMP', 'QMP connection closed', { details: { socketPath: this.socketPath } }),
    );
  }

  /** Register a wait for the message with `key` (a command id, or `GREETING`). */
  private expect(key: string, command: string, timeoutMs: number, timeoutMessage: string): Promise<unknown> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(key);
        reject(
          new RwanError('RWAN_ERR_QMP_TIMEOUT', timeoutMessage, {
            details: { command, timeoutMs, socketPath: this.socketPath },
          }),
        );
      }, timeoutMs);
      this.pending.set(key, { command, resolve, reject, timer });
    });
  }

  private onData(chunk: Buffer): void {
    try {
      for (const line of this.decoder.write(chunk)) {
        if (line.trim() !== '') this.onMessage(parseMessage(line));
      }
    } catch (err) {
      this.fail(err instanceof RwanError ? err : new RwanError('RWAN_ERR_QMP', String(err), { cause: err }));
    }
  }

  private onMessage(msg: Record<string, unknown>): void {
    if ('event' in msg) return;
    const greeting = this.pending.has(GREETING);
    if (greeting && !isObject(msg.QMP)) throw unexpected('a QMP greeting', msg);
    const id = typeof msg.id === 'string' ? msg.id : undefined;
    // A reply without our id (QEMU could not parse a command) answers the oldest command.
    const key = greeting ? GREETING : (id ?? this.pending.keys().next().value);
    const p = key === undefined ? undefined : this.pending.get(key);
    if (key === undefined || !p) {
      if (id !== undefined) return; // the reply to a command that already timed out
      throw unexpected('no message', msg);
    }
    this.pending.delete(key);
    clearTimeout(p.timer);
    if (greeting) p.resolve(msg.QMP);
    else if ('return' in msg) p.resolve(msg.return);
    else if (isObject(msg.error)) {
      const cls = String(msg.error.class ?? 'GenericError');
      const desc = String(msg.error.desc ?? '');
      p.reject(
        new RwanError('RWAN_ERR_QMP', `QMP ${p.command}: ${cls}: ${desc}`, {
          details: { class: cls, desc, command: p.command },
        }),
      );
    } else p.reject(unexpected(`a reply to ${p.command}`, msg));
  }

  private fail(err: RwanError): void {
    if (this.failure) return;
    this.failure = err;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.pending.clear();
    this.socket.destroy();
  }
}

function openSocket(socketPath: string, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new RwanError(
          'RWAN_ERR_QMP_TIMEOUT',
          `cannot connect to QMP socket ${socketPath} within ${timeoutMs} ms`,
          {
            details: { socketPath, timeoutMs },
          },
        ),
      );
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const why =
        err.code === 'ENOENT'
          ? 'no such socket'
          : err.code === 'ECONNREFUSED'
            ? 'connection refused (is QEMU running?)'
            : err.message;
      reject(
        new RwanError(
          'RWAN_ERR_QMP',
          `cannot connect to QMP socket ${socketPath}: ${why}; start QEMU with -qmp unix:${socketPath},server=on,wait=off`,
          { cause: err, details: { socketPath, errno: err.code } },
        ),
      );
    });
  });
}

function parseMessage(line: string): Record<string, unknown> {
  let msg: unknown;
  try {
    msg = JSON.parse(line);
  } catch (err) {
    throw new RwanError('RWAN_ERR_QMP', `QMP sent invalid JSON: ${line.slice(0, 80)}`, {
      cause: err,
      details: { line: line.slice(0, 200) },
    });
  }
  if (!isObject(msg)) throw unexpected('a JSON object', msg);
  return msg;
}

function unexpected(expected: string, got: unknown): RwanError {
  const text = JSON.stringify(got)?.slice(0, 200);
  return new RwanError('RWAN_ERR_QMP', `unexpected QMP message (expected ${expected}): ${text}`, {
    details: { expected, message: text },
  });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
