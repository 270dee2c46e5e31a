/**
 * Captures a REAL page corpus: the memory of a real server process under load, epoch by epoch, as a
 * page log (docs/page-log.md). Run it through `tools/capture/capture-process-pages.sh`, which installs
 * the Debian packages (redis-server, redis-tools) when they are missing; it needs root (ptrace access
 * to /proc/PID/mem).
 *
 *   node dist/tools/capture/capture-process-pages.js --epochs 30 --epoch-ms 100 --max-mib 256 \
 *     --out tools/capture/out/redis.pagelog
 *
 * What it does:
 * 1. starts `redis-server` (no persistence, a Unix socket in a private temp dir) and preloads it with
 *    `redis-benchmark` (SET of `--keys` random keys of `--value-bytes` bytes);
 * 2. starts a mixed load with `redis-benchmark` (SET, GET, INCR, LPUSH, HSET on random keys) that runs
 *    until the capture ends;
 * 3. epoch 0: SIGSTOP, read every writable private anonymous mapping ([heap], [stack], anonymous
 *    rw-p; up to `--max-mib`) from /proc/PID/mem; the whole snapshot is epoch 0 of the log;
 * 4. every epoch: let the process run `--epoch-ms`, SIGSTOP, snapshot again, compare page by page with
 *    the previous snapshot, write the epoch, SIGCONT (the process is paused during the whole
 *    checkpoint, as Remus pauses the VM, so it runs exactly `--epoch-ms` per epoch); the changed pages (and pages of new mappings) are the epoch's
 *    dirty pages. Kernel soft-dirty bits would be cheaper, but CONFIG_MEM_SOFT_DIRTY is not always set,
 *    so content comparison it is (a page written with identical bytes is not seen — nor would it cost
 *    a replicator anything after a delta);
 * 5. pfns: each virtual page gets a stable pfn the first time it is seen (address order in epoch 0,
 *    then order of appearance), like guest-physical frames of a VM;
 * 6. kills exactly the processes it started, removes its temp dir, prints (and writes next to the log,
 *    as `<out>.summary.json`) the statistics: dirty pages per epoch, share of zero pages, share of
 *    dirty pages whose XOR with their previous content has < 64 changed bytes.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { PageLogWriter } from '../workload/page-log.js';

const PAGE = 4096;

interface Options {
  epochs: number;
  epochMs: number;
  maxMiB: number;
  keys: number;
  valueBytes: number;
  clients: number;
  out: string;
}

interface Region {
  start: number;
  end: number;
  name: string;
}

/** Writable private anonymous mappings of `pid` ([heap], [stack], anonymous rw-p), in address order. */
export function writableAnonRegions(maps: string): Region[] {
  const out: Region[] = [];
  for (const line of maps.split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ (\d+)\s*(.*)$/.exec(line);
    if (!m) continue;
    const [, s, e, perms, inode, rawName] = m as unknown as [string, string, string, string, string, string];
    const name = rawName.trim();
    if (perms !== 'rw-p' || inode !== '0') continue;
    if (name !== '' && name !== '[heap]' && name !== '[stack]') continue;
    out.push({ start: Number.parseInt(s, 16), end: Number.parseInt(e, 16), name: name || 'anon' });
  }
  return out;
}

/** Reads `n` bytes at address `va` of the process into `buf` at `at`; false when not all could be. */
function readRun(fd: number, buf: Buffer, at: number, n: number, va: number): boolean {
  let got = 0;
  try {
    while (got < n) {
      const k = readSync(fd, buf, at + got, n - got, va + got);
      if (k === 0) return false;
      got += k;
    }
  } catch {
    return false;
  }
  return true;
}

/** True when the page of `u` (u32 words) at word `w` is all zero. */
function isZeroPage(u: Uint32Array, w: number): boolean {
  for (let i = w; i < w + PAGE / 4; i++) if (u[i] !== 0) return false;
  return true;
}

/** Bytes that differ between the pages at word `w` of `a` and of `b`. */
function changedBytes(a: Uint32Array, b: Uint32Array, w: number): number {
  let c = 0;
  for (let i = w; i < w + PAGE / 4; i++) {
    const x = ((a[i] as number) ^ (b[i] as number)) >>> 0;
    if (x !== 0) c += (x & 0xff ? 1 : 0) + (x & 0xff00 ? 1 : 0) + (x & 0xff0000 ? 1 : 0) + (x >>> 24 ? 1 : 0);
  }
  return c;
}

function stopped(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state === 'T' || state === 't';
  } catch {
    return false;
  }
}

async function waitStopped(pid: number): Promise<void> {
  for (let i = 0; i < 2000 && !stopped(pid); i++) await sleep(1);
}

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 120_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr?.toString() ?? r.error}`);
}

async function waitForSocket(sock: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`redis-server exited (${child.exitCode}) before listening`);
    const r = spawnSync('redis-cli', ['-s', sock, 'ping'], { encoding: 'utf8' });
    if (r.stdout?.trim() === 'PONG') return;
    await sleep(50);
  }
  throw new Error('redis-server did not answer PING within 10 s');
}

async function terminate(child: ChildProcess | undefined): Promise<void> {
  if (child?.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const pid = child.pid;
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    process.kill(pid, 'SIGCONT');
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const timer = setTimeout(() => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }, 3000);
  await gone;
  clearTimeout(timer);
}

interface EpochStat {
  epoch: number;
  dirty: number;
  newPages: number;
  zero: number;
  xorUnder64: number;
  changedBytes: number;
  /** Paused: snapshot + diff + write. */
  stopMs: number;
  snapshotMs: number;
  runMs: number;
}

export async function capture(o: Options): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(join(tmpdir(), 'rwan-capture-'));
  const sock = join(dir, 'redis.sock');
  let server: ChildProcess | undefined;
  let loaders: ChildProcess[] = [];
  let memFd: number | undefined;
  const onSignal = (): void => {
    // Resume and end our children; the finally below does the rest.
    for (const c of [...loaders, server]) if (c?.pid !== undefined && c.exitCode === null) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const version = spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).stdout.trim();
    server = spawn(
      'redis-server',
      [
        '--port',
        '0',
        '--unixsocket',
        sock,
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        dir,
        '--daemonize',
        'no',
        '--logfile',
        join(dir, 'redis.log'),
      ],
      { stdio: 'ignore' },
    );
    await waitForSocket(sock, server);
    const pid = server.pid as number;
    process.stderr.write(
      `capture: redis-server pid ${pid}; preloading ${o.keys} keys of ${o.valueBytes} B\n`,
    );
    run('redis-benchmark', [
      '-s',
      sock,
      '-q',
      '-t',
      'set',
      '-n',
      String(o.keys),
      '-r',
      String(o.keys),
      '-d',
      String(o.valueBytes),
    ]);
    // Two concurrent looping clients: SET/GET of the preloaded keys (values replaced, LRU clocks
    // touched), and INCR/LPUSH/LPOP/HSET (counters, a list, a hash).
    const loads = [
      ['-t', 'set,get', '-n', '30000', '-r', String(o.keys), '-d', String(o.valueBytes)],
      ['-t', 'incr,lpush,lpop,hset', '-n', '10000', '-r', String(o.keys), '-d', '32'],
    ].map((t) => ['-q', '-c', String(o.clients), ...t, '-l']);
    const loadText = loads.map((a) => `redis-benchmark ${a.join(' ')}`).join(' & ');
    loaders = loads.map((a) => spawn('redis-benchmark', ['-s', sock, ...a], { stdio: 'ignore' }));
    await sleep(500); // let the load reach a steady state

    memFd = openSync(`/proc/${pid}/mem`, 'r');
    const maxPages = Math.floor((o.maxMiB * 2 ** 20) / PAGE);
    const prev = Buffer.alloc(maxPages * PAGE); // content of each pfn at the previous snapshot
    const cur = Buffer.alloc(maxPages * PAGE); // this snapshot, by pfn
    const cur32 = new Uint32Array(cur.buffer, cur.byteOffset, cur.length / 4);
    const prev32 = new Uint32Array(prev.buffer, prev.byteOffset, prev.length / 4);
    const seen = new Uint8Array(maxPages); // pfn present in the previous snapshot
    const present = new Uint8Array(maxPages);
    const pfnOf = new Map<number, number>(); // virtual page number → pfn
    let nextPfn = 0;
    let capped = false;
    const writer = PageLogWriter.create(o.out, {
      pageSize: PAGE,
      meta: {
        generator: 'remus-wan capture-process-pages',
        program: version,
        load: loadText,
        preload: { keys: o.keys, valueBytes: o.valueBytes },
        epochMs: o.epochMs,
        maxMiB: o.maxMiB,
        regions: 'rw-p anonymous, [heap], [stack]',
        kernel: readFileSync('/proc/sys/kernel/osrelease', 'latin1').trim(),
        epoch0: 'full snapshot',
      },
    });
    const stats: EpochStat[] = [];
    let mappedPages = 0;
    let resumedAt = 0;

    for (let epoch = 0; epoch <= o.epochs; epoch++) {
      // The process runs exactly `epochMs` between two snapshots (the diff and the write overlap it).
      if (epoch > 0) await sleep(Math.max(0, o.epochMs - (performance.now() - resumedAt)));
      const t0 = performance.now();
      const runMs = epoch > 0 ? t0 - resumedAt : 0;
      process.kill(pid, 'SIGSTOP');
      await waitStopped(pid);
      // Snapshot.
      present.fill(0);
      const regions = writableAnonRegions(readFileSync(`/proc/${pid}/maps`, 'latin1'));
      const dirty: number[] = [];
      mappedPages = 0;
      for (const r of regions) {
        for (let va = r.start; va < r.end; va += PAGE) {
          const vpn = va / PAGE;
          let pfn = pfnOf.get(vpn);
          if (pfn === undefined) {
            if (nextPfn >= maxPages) {
              capped = true;
              continue;
            }
            pfn = nextPfn++;
            pfnOf.set(vpn, pfn);
          }
          present[pfn] = 1;
          mappedPages++;
        }
        // Read the region's pages that have a pfn, in runs of consecutive pfns.
        let va = r.start;
        while (va < r.end) {
          const pfn = pfnOf.get(va / PAGE);
          if (pfn === undefined) {
            va += PAGE;
            continue;
          }
          let n = 1;
          while (va + n * PAGE < r.end && pfnOf.get(va / PAGE + n) === pfn + n && n < 4096) n++;
          if (!readRun(memFd, cur, pfn * PAGE, n * PAGE, va)) {
            // Something in the run is unreadable: page by page, an unreadable page reads as zeros.
            for (let i = 0; i < n; i++) {
              if (!readRun(memFd, cur, (pfn + i) * PAGE, PAGE, va + i * PAGE)) {
                cur.fill(0, (pfn + i) * PAGE, (pfn + i + 1) * PAGE);
              }
            }
          }
          va += n * PAGE;
        }
      }
      const snapshotMs = performance.now() - t0;
      // Diff against the previous snapshot and write the epoch while the process is still stopped
      // (as Remus pauses the VM for a checkpoint): it then runs exactly `epochMs` per epoch.
      const st: EpochStat = {
        epoch,
        dirty: 0,
        newPages: 0,
        zero: 0,
        xorUnder64: 0,
        changedBytes: 0,
        stopMs: 0,
        snapshotMs,
        runMs,
      };
      for (let pfn = 0; pfn < nextPfn; pfn++) {
        if (!present[pfn]) continue;
        const at = pfn * PAGE;
        const old = seen[pfn] === 1;
        if (epoch > 0 && old && cur.compare(prev, at, at + PAGE, at, at + PAGE) === 0) continue;
        dirty.push(pfn);
        if (isZeroPage(cur32, at / 4)) st.zero++;
        if (!old) st.newPages++;
        else {
          const c = changedBytes(cur32, prev32, at / 4);
          st.changedBytes += c;
          if (c < 64) st.xorUnder64++;
        }
      }
      st.dirty = dirty.length;
      writer.writeEpochFromMemory(epoch, dirty, cur);
      for (const pfn of dirty) cur.copy(prev, pfn * PAGE, pfn * PAGE, (pfn + 1) * PAGE);
      seen.set(present);
      process.kill(pid, 'SIGCONT');
      resumedAt = performance.now();
      const stopMs = resumedAt - t0;
      st.stopMs = stopMs;
      stats.push(st);
      process.stderr.write(
        `capture: epoch ${epoch}: ${dirty.length} dirty of ${mappedPages} pages (new ${st.newPages}, ` +
          `zero ${st.zero}, xor<64B ${st.xorUnder64}), ran ${runMs.toFixed(0)} ms, stopped ${stopMs.toFixed(0)} ms (snapshot ${snapshotMs.toFixed(0)})\n`,
      );
    }
    const totals = writer.close();
    const later = stats.slice(1);
    const sum = (f: (s: EpochStat) => number): number => later.reduce((a, s) => a + f(s), 0);
    const dirtyTotal = sum((s) => s.dirty);
    const oldTotal = dirtyTotal - sum((s) => s.newPages);
    const perEpoch = later.map((s) => s.dirty).sort((a, b) => a - b);
    const summary = {
      out: o.out,
      bytes: totals.bytes,
      program: version,
      load: loadText,
      epochs: o.epochs,
      epochMs: o.epochMs,
      capturedPages: mappedPages,
      capturedMiB: (mappedPages * PAGE) / 2 ** 20,
      capped,
      epoch0: {
        pages: stats[0]?.dirty ?? 0,
        zeroShare: (stats[0]?.zero ?? 0) / Math.max(1, stats[0]?.dirty ?? 0),
      },
      dirtyPerEpoch: {
        mean: dirtyTotal / Math.max(1, later.length),
        min: perEpoch[0] ?? 0,
        median: perEpoch[Math.floor(perEpoch.length / 2)] ?? 0,
        max: perEpoch[perEpoch.length - 1] ?? 0,
      },
      dirtyZeroShare: sum((s) => s.zero) / Math.max(1, dirtyTotal),
      dirtyNewShare: sum((s) => s.newPages) / Math.max(1, dirtyTotal),
      xorUnder64Share: sum((s) => s.xorUnder64) / Math.max(1, oldTotal),
      meanChangedBytesPerRewrittenPage: sum((s) => s.changedBytes) / Math.max(1, oldTotal),
      meanStopMs: sum((s) => s.stopMs) / Math.max(1, later.length),
      meanSnapshotMs: sum((s) => s.snapshotMs) / Math.max(1, later.length),
      meanRunMs: sum((s) => s.runMs) / Math.max(1, later.length),
      perEpoch: stats,
    };
    writeFileSync(`${o.out}.summary.json`, `${JSON.stringify(summary, null, 2)}\n`);
    return summary;
  } finally {
    if (memFd !== undefined) closeSync(memFd);
    for (const c of loaders) await terminate(c);
    await terminate(server);
    rmSync(dir, { recursive: true, force: true });
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      epochs: { type: 'string', default: '30' },
      'epoch-ms': { type: 'string', default: '100' },
      'max-mib': { type: 'string', default: '256' },
      keys: { type: 'string', default: '200000' },
      'value-bytes': { type: 'string', default: '256' },
      clients: { type: 'string', default: '8' },
      out: { type: 'string', default: 'tools/capture/out/redis.pagelog' },
    },
  });
  const o: Options = {
    epochs: Number(values.epochs),
    epochMs: Number(values['epoch-ms']),
    maxMiB: Number(values['max-mib']),
    keys: Number(values.keys),
    valueBytes: Number(values['value-bytes']),
    clients: Number(values.clients),
    out: values.out,
  };
  for (const [k, v] of Object.entries(o)) {
    if (typeof v === 'number' && !(Number.isInteger(v) && v > 0)) {
      process.stderr.write(`capture: --${k} must be a positive integer\n`);
      process.exitCode = 2;
      return;
    }
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write('capture: must run as root (reads /proc/PID/mem of the server)\n');
    process.exitCode = 2;
    return;
  }
  const summary = await capture(o);
  const { perEpoch: _, ...short } = summary;
  process.stdout.write(`${JSON.stringify(short, null, 2)}\n`);
}

if (process.argv[1]?.endsWith('capture-process-pages.js')) {
  main().catch((err: unknown) => {
    process.stderr.write(`capture: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  });
}
