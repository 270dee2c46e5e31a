/**
 * What the benchmarks that run the daemons as processes share: /proc readings, the processes and
 * directories they start (all cleaned up on SIGINT/SIGTERM), waiting, tailing a JSONL stats file, and
 * medians and percentiles.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
} from 'node:fs';
import { createServer, type Server } from 'node:net';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

/**
 * The options a usage text names, each with whether it takes a value: `--name` followed by a
 * placeholder (`[--rates N,…]`, `[--encoder worker|pool]`) takes one, `--name]` is a flag. The usage is
 * the one list of a benchmark's options, so that it cannot name one the command line refuses.
 */
export function usageOptions(usage: string): Map<string, boolean> {
  const out = new Map<string, boolean>();
  for (const m of usage.matchAll(/(--[a-z][\w-]*)( [^\s[\]|-])?/g))
    out.set(m[1] as string, m[2] !== undefined);
  return out;
}

/**
 * A benchmark's command line: its flags (`has`) and its options with a value (`opt`), as its usage
 * text names them ({@link usageOptions}). `--help` prints the usage and exits; an argument that is
 * neither a known flag nor a known option's value, or an option without its value, exits with 2 (a
 * misspelt option would otherwise start a long run with the defaults).
 */
export function commandLine(usage: string, args: readonly string[] = process.argv.slice(2)) {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  const known = usageOptions(usage);
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    const takesValue = known.get(a);
    if (takesValue === undefined) {
      process.stderr.write(`unknown argument "${a}" (--help lists the options)\n`);
      process.exit(2);
    }
    if (takesValue && ++i >= args.length) {
      process.stderr.write(`${a} needs a value (--help lists the options)\n`);
      process.exit(2);
    }
  }
  return {
    has: (name: string) => args.includes(name),
    opt: (name: string): string | undefined => {
      const i = args.indexOf(name);
      return i >= 0 ? args[i + 1] : undefined;
    },
  };
}

/** `--rates N,N…`: writer rates in page writes per second, or undefined when not given. */
export function ratesOption(text: string | undefined): number[] | undefined {
  const rates = text?.split(',').map(Number);
  if (rates?.some((r) => !(Number.isInteger(r) && r > 0))) {
    throw new Error(`--rates takes page writes per second, comma-separated, got "${text}"`);
  }
  return rates;
}

/** Clock ticks per second of /proc/PID/stat (USER_HZ). */
const TICK = 100;

// ---------------------------------------------------------------------------------------------------
// /proc

export function statFields(pid: number): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** utime + stime of all threads, seconds. */
export function cpuSeconds(pid: number): number {
  const f = statFields(pid);
  return (Number(f[11]) + Number(f[12])) / TICK;
}

/** Seconds the threads of `pid` spent waiting for a CPU (/proc/PID/task/TID/schedstat). */
export function runQueueSeconds(pid: number): number {
  let wait = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      wait += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'latin1').split(' ')[1]);
    } catch {
      // the thread ended
    }
  }
  return wait / 1e9;
}

/** A `kB` field of /proc/PID/status, in bytes. */
export function statusBytes(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
  return m ? Number(m[1]) * 1024 : Number.NaN;
}

export function ioCounter(pid: number, field: string): number {
  const m = new RegExp(`^${field}: (\\d+)`, 'm').exec(readFileSync(`/proc/${pid}/io`, 'latin1'));
  return m ? Number(m[1]) : Number.NaN;
}

/** Busy CPU seconds of the whole machine so far (all cores): /proc/stat without idle and iowait. */
export function machineBusySeconds(): number {
  const first = readFileSync('/proc/stat', 'latin1').split('\n')[0] ?? '';
  const f = first.trim().split(/\s+/).slice(1, 9).map(Number);
  return (f.reduce((a, b) => a + b, 0) - (f[3] ?? 0) - (f[4] ?? 0)) / TICK;
}

// ---------------------------------------------------------------------------------------------------
// processes

/**
 * What an interrupted benchmark must clean up: the processes it started, its directories, and
 * anything else it set up (`undo`: synchronous, run last, e.g. taking a network lab down).
 */
export const live = {
  children: new Set<ChildProcess>(),
  dirs: new Set<string>(),
  undo: new Set<() => void>(),
};

export function tempDir(root: string, prefix: string): string {
  const d = mkdtempSync(join(root, prefix));
  live.dirs.add(d);
  return d;
}

export function removeDir(d: string): void {
  rmSync(d, { recursive: true, force: true });
  live.dirs.delete(d);
}

export function track(c: ChildProcess): ChildProcess {
  live.children.add(c);
  c.once('exit', () => live.children.delete(c));
  return c;
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    for (const c of live.children) c.kill('SIGKILL');
    for (const d of live.dirs) rmSync(d, { recursive: true, force: true });
    for (const f of live.undo) f();
    process.exit(130);
  });
}

/**
 * The Node flags on the first line of a CLI script (`#!/usr/bin/env -S node FLAGS`): to run it as
 * installed.
 */
export function nodeFlagsOf(script: string): string[] {
  const first = readFileSync(script, 'utf8').split('\n')[0] ?? '';
  return (/^#!\/usr\/bin\/env -S node(.*)$/.exec(first)?.[1] ?? '')
    .trim()
    .split(/\s+/)
    .filter((f) => f !== '');
}

/** The ports {@link freePorts} has handed out in this process. */
const handedOut = new Set<number>();

/**
 * `n` distinct TCP ports of 127.0.0.1 that nothing listens on right now and that this process has not
 * been handed before: each is held until all are found. Ports taken and given back one at a time can
 * repeat, so two daemons (or two addresses of one), given ports by separate calls before the first
 * has opened its own, would collide.
 */
export async function freePorts(n: number): Promise<number[]> {
  const held: Server[] = [];
  const ports: number[] = [];
  try {
    while (ports.length < n) {
      if (held.length > n + 1000) throw new Error('freePorts: no port left that was not handed out before');
      const server = createServer();
      held.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', resolve);
      });
      const { port } = server.address() as { port: number };
      if (handedOut.has(port)) continue; // held: the next one is another port
      handedOut.add(port);
      ports.push(port);
    }
    return ports;
  } finally {
    await Promise.all(held.map((server) => new Promise((resolve) => server.close(resolve))));
  }
}

export function spawnNode(
  script: string,
  argv: string[],
  logPath: string,
  nodeFlags: string[] = [],
): ChildProcess {
  const fd = openSync(logPath, 'a');
  try {
    return track(spawn(process.execPath, [...nodeFlags, script, ...argv], { stdio: ['ignore', fd, fd] }));
  } finally {
    closeSync(fd);
  }
}

export function alive(c: ChildProcess): boolean {
  return c.exitCode === null && c.signalCode === null;
}

/** SIGTERM, then SIGKILL after `ms`; resolves when the process has exited. */
export async function stop(c: ChildProcess, ms = 15_000): Promise<void> {
  if (!alive(c)) return;
  const gone = once(c, 'exit');
  c.kill('SIGTERM');
  const t = setTimeout(() => c.kill('SIGKILL'), ms);
  await gone;
  clearTimeout(t);
}

export async function until<T>(
  what: string,
  ms: number,
  f: () => Promise<T | undefined> | T | undefined,
): Promise<T> {
  const deadline = performance.now() + ms;
  for (;;) {
    try {
      const v = await f();
      if (v !== undefined) return v;
    } catch {
      // not there yet
    }
    if (performance.now() > deadline) throw new Error(`timed out after ${ms / 1000} s waiting for ${what}`);
    await sleep(20);
  }
}

export async function httpText(url: string): Promise<string> {
  return (await fetch(url)).text();
}

/** A sample of a Prometheus text exposition, or NaN. */
export function promValue(text: string, name: string): number {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : Number.NaN;
}

/** The lines appended to a JSONL file, each with the time it was first seen. */
export class Tail {
  private at = 0;
  private rest = '';
  readonly lines: Array<{ t: number; row: Record<string, unknown> }> = [];
  constructor(private readonly path: string) {}
  /** Read what was appended; returns the number of new lines. */
  poll(): number {
    if (!existsSync(this.path)) return 0;
    const size = statSync(this.path).size;
    if (size <= this.at) return 0;
    const buf = Buffer.alloc(size - this.at);
    const fd = openSync(this.path, 'r');
    try {
      readSync(fd, buf, 0, buf.length, this.at);
    } finally {
      closeSync(fd);
    }
    this.at = size;
    const parts = (this.rest + buf.toString('utf8')).split('\n');
    this.rest = parts.pop() ?? '';
    const t = performance.now();
    let n = 0;
    for (const p of parts) {
      if (p.trim() === '') continue;
      this.lines.push({ t, row: JSON.parse(p) as Record<string, unknown> });
      n++;
    }
    return n;
  }
}

// ---------------------------------------------------------------------------------------------------
// statistics

export function median(xs: number[]): number {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** Nearest-rank percentile. */
export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))] as number;
}

/** The workload writer (tools/workload/writer.ts), built beside this file. */
const WRITER = join(dirname(fileURLToPath(import.meta.url)), '..', 'workload', 'writer.js');

/**
 * Start the workload writer: the generator's default workload (`seed`) on a `pages`-page image,
 * written into a shared mapping of the image (`--io map`: a page write is its mutation, as a guest
 * writes its RAM), `rate` page writes per second (0: as fast as it can); its pages logged in batches
 * of 16 just before they are written (`--log-batch 16`, batches marked), so the dirty log names what
 * was written, as a hypervisor's dirty bitmap would, and a capture re-reads at most the 16 pages
 * whose writes may have been pending (with epoch-sized batches a slow writer's whole batch is read
 * again at every capture until the next batch, docs/dirty-log.md §5). One append per page costs the
 * writer a system call per page, half its CPU, which the daemons would then not have. `ready`
 * resolves with its pid once the image exists.
 */
export function startWriter(o: {
  image: string;
  dirtyLog: string;
  pages: number;
  seed: number;
  rate: number;
}): { proc: ChildProcess; ready: Promise<number> } {
  const args = [WRITER, '--image', o.image, '--pages', String(o.pages), '--seed', String(o.seed)].concat(
    ['--io', 'map', '--dirty-log', o.dirtyLog, '--log-batch', String(WRITER_LOG_BATCH)],
    ['--rate', String(o.rate)],
  );
  const proc = track(spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] }));
  let out = '';
  proc.stdout?.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  const ready = until('the writer', 120_000, () => {
    const m = /ready (\d+)/.exec(out);
    return m ? Number(m[1]) : undefined;
  });
  return { proc, ready };
}

/** Pages per dirty-log append of the writer (see startWriter). */
export const WRITER_LOG_BATCH = 16;
