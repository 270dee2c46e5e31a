/**
 * The backup's receive command as a sink for the Xen receiver (xen-receiver.ts): `sh -c "exec
 * COMMAND [-e]"` (by default `xl migrate-receive -r`), its banner checked byte for byte as xl's
 * sender does, then the stream written to its stdin. Whatever it prints after the banner (xl's back
 * channel) goes to `onOutput`, for the tunnel.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { RwanError } from '../errors.js';
import type { Log } from '../replication/sender.js';
import { XL_BANNER } from './format.js';
import type { XenSink } from './xen-receiver.js';

export class ReceiveCommand implements XenSink {
  private output: ((bytes: Buffer) => void) | undefined;

  private child: ChildProcess | undefined;
  private exited: { code: number | null; signal: string | null } | undefined;
  private readonly exit: Promise<void>;
  private exitResolve!: () => void;

  constructor(private readonly o: { command: string; bannerTimeoutMs: number; log: Log }) {
    this.exit = new Promise((resolve) => {
      this.exitResolve = resolve;
    });
  }

  /** Its exit status, once it has exited. */
  get exitStatus(): { code: number | null; signal: string | null } | undefined {
    return this.exited;
  }

  /** Resolves when the command has exited. */
  get done(): Promise<void> {
    return this.exit;
  }

  /** Where what the command prints after its banner (xl's back channel) goes. */
  onOutput(fn: (bytes: Buffer) => void): void {
    this.output = fn;
  }

  open(detach: boolean): Promise<void> {
    const command = `exec ${this.o.command}${detach ? ' -e' : ''}`;
    const child = spawn('sh', ['-c', command], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.child = child;
    this.o.log.info({ command, pid: child.pid }, 'receive command started');
    child.stdin?.on('error', () => undefined); // reported by write() and by the exit
    child.on('exit', (code, signal) => {
      this.exited = { code, signal };
      this.o.log[code === 0 ? 'info' : 'warn']({ code, signal }, 'receive command exited');
      this.exitResolve();
    });
    const banner = Buffer.from(XL_BANNER);
    return new Promise((resolve, reject) => {
      let got = Buffer.alloc(0);
      let answered = false;
      const timer = setTimeout(
        () => fail(`no banner within ${this.o.bannerTimeoutMs} ms`),
        this.o.bannerTimeoutMs,
      );
      const fail = (why: string) => {
        if (answered) return;
        answered = true;
        clearTimeout(timer);
        child.kill('SIGTERM');
        reject(new RwanError('RWAN_ERR_PEER', `${command}: ${why}`));
      };
      child.once('error', (err) => fail(err.message));
      child.once('exit', (code, signal) =>
        fail(
          `exited (${code ?? signal}) before its banner${got.length ? `, after printing ${JSON.stringify(got.toString())}` : ''}`,
        ),
      );
      // after the banner its stdout is xl's back channel: passed on to the tunnel as it is
      const passOn = (b: Buffer) => {
        this.output?.(b);
        this.o.log.info({ bytes: b.length }, 'receive command output, passed on');
      };
      child.stdout?.on('data', (chunk: Buffer) => {
        if (answered) {
          passOn(chunk);
          return;
        }
        got = Buffer.concat([got, chunk]);
        if (got.length < banner.length && banner.subarray(0, got.length).equals(got)) return;
        if (!got.subarray(0, banner.length).equals(banner)) {
          fail(`printed ${JSON.stringify(got.toString())}, not xl's banner`);
          return;
        }
        answered = true;
        clearTimeout(timer);
        if (got.length > banner.length) passOn(got.subarray(banner.length));
        resolve();
      });
    });
  }

  write(bytes: Buffer): Promise<void> {
    const stdin = this.child?.stdin;
    if (!stdin || this.exited)
      return Promise.reject(
        new RwanError('RWAN_ERR_IO', `the receive command has exited (${JSON.stringify(this.exited)})`),
      );
    return new Promise((resolve, reject) => {
      stdin.write(bytes, (err) => {
        if (err)
          reject(
            new RwanError('RWAN_ERR_IO', `writing to the receive command: ${err.message}`, { cause: err }),
          );
        else resolve();
      });
    });
  }

  async end(): Promise<void> {
    const stdin = this.child?.stdin;
    if (!stdin || stdin.writableEnded) return;
    await new Promise<void>((resolve) => stdin.end(() => resolve()));
  }
}
