/**
 * Measure a running QEMU guest's dirty rate over QMP (`calc-dirty-rate` / `query-dirty-rate`, see
 * planner-model §6.1) at several window lengths, and return a {@link MeasurementFile}.
 *
 *   query-version, query-memory-size-summary, query-target
 *   for each window: calc-dirty-rate ──> poll query-dirty-rate until "measured" ──> {windowMs, MiB/s, pages}
 *
 * QEMU ≥ 8.2 takes `calc-time` in milliseconds (`"calc-time-unit": "millisecond"`, 50–60 000 ms). Older
 * releases (7.2 answers `Parameter 'calc-time-unit' is unexpected`) take whole seconds only: windows are
 * then rounded up to whole seconds, merged when they collide, and the file says so in `notes`.
 */
import { RwanError } from '../errors.js';
import { QMP_DEFAULT_TIMEOUT_MS, QmpClient } from './qmp-client.js';
import type { MeasurementFile } from './types.js';

/** The modes of `calc-dirty-rate`. Under TCG, QEMU 7.2 crashes in `dirty-bitmap` and `dirty-ring`. */
export type QmpDirtyRateMode = 'page-sampling' | 'dirty-bitmap' | 'dirty-ring';

/** Options of {@link measureQmp}. */
export interface MeasureQmpOptions {
  /** Path of QEMU's QMP UNIX socket (`-qmp unix:PATH,server=on,wait=off`). */
  socketPath: string;
  /** Window lengths to measure, in seconds. */
  windowsS: number[];
  /** Default `page-sampling`, the only mode that works without KVM. */
  mode?: QmpDirtyRateMode;
  /** Pages sampled per GiB in `page-sampling` mode (QEMU default 512, range 128–16 384). */
  samplePagesPerGiB?: number;
  /** Measurements per window (default 1); several give the planner percentiles, not just a mean. */
  repeat?: number;
  /** Guest name written to the file. */
  guest?: string;
  /** Time limit for each QMP reply and for each window's result beyond its length, in seconds (default 30). */
  timeoutS?: number;
  /** Called with one human-readable line per step. */
  onProgress?: (msg: string) => void;
  /** Clock for `startedAt` (tests). */
  now?: () => Date;
}

/** Page size assumed for targets whose QEMU dirty tracking uses 4 KiB pages, in bytes. */
const PAGE_SIZE = 4096;
const FOUR_K_TARGETS = new Set(['x86_64', 'i386', 's390x', 'riscv64', 'riscv32', 'ppc64', 'ppc']);
const MIB = 2 ** 20;

interface DirtyRateInfo {
  status: 'unstarted' | 'measuring' | 'measured';
  'dirty-rate'?: number;
  'calc-time': number;
  'sample-pages'?: number;
}

/** One planned `calc-dirty-rate` run: its `calc-time` and the unit QEMU takes it in. */
interface Window {
  calcTime: number;
  unit: 'millisecond' | 'second';
}

/**
 * Measure the guest's dirty rate at each window over QMP.
 * @returns the measurements, ascending by window, with QEMU version, memory size and notes
 */
export async function measureQmp(options: MeasureQmpOptions): Promise<MeasurementFile> {
  const windowsS = checkWindows(options.windowsS);
  const mode = options.mode ?? 'page-sampling';
  const timeoutMs = (options.timeoutS ?? 30) * 1000;
  if (!(timeoutMs > 0)) {
    throw new RwanError('RWAN_ERR_INVALID_VALUE', 'timeout must be positive', {
      details: { timeoutS: options.timeoutS },
    });
  }
  const repeat = options.repeat ?? 1;
  if (!(Number.isInteger(repeat) && repeat >= 1)) {
    throw new RwanError('RWAN_ERR_INVALID_VALUE', 'repeat must be a whole number ≥ 1', {
      details: { repeat },
    });
  }
  const progress = options.onProgress ?? (() => undefined);
  const startedAt = (options.now ?? (() => new Date()))().toISOString();
  const client = await QmpClient.connect(options.socketPath, {
    timeoutMs: Math.min(timeoutMs, QMP_DEFAULT_TIMEOUT_MS),
  });
  try {
    const exec = <T>(cmd: string, args?: Record<string, unknown>) =>
      client.execute<T>(cmd, args, { timeoutMs });
    const version = await exec<{ qemu: { major: number; minor: number; micro: number } }>('query-version');
    const qemuVersion = `${version.qemu.major}.${version.qemu.minor}.${version.qemu.micro}`;
    const memory = await exec<{ 'base-memory': number }>('query-memory-size-summary');
    const target = await exec<{ arch: string }>('query-target');
    const notes: string[] = [];
    if (!FOUR_K_TARGETS.has(target.arch))
      notes.push(`page size assumed ${PAGE_SIZE} B for target ${target.arch}`);
    if (mode === 'page-sampling') {
      notes.push(
        'page-sampling counts pages whose content changed; rewrites with identical bytes are missed',
      );
    }
    progress(`QEMU ${qemuVersion}, ${target.arch}, ${memory['base-memory'] / MIB} MiB, mode ${mode}`);

    // `mode` is left out for the default so QEMU 5.2–6.0 (which lack it) still work.
    const baseArgs: Record<string, unknown> = mode === 'page-sampling' ? {} : { mode };
    if (options.samplePagesPerGiB !== undefined) baseArgs['sample-pages'] = options.samplePagesPerGiB;
    await waitIdle(client, timeoutMs);
    // The first window doubles as the probe for millisecond support.
    const msStarted = await startMs(client, windowsS[0] as number, baseArgs, timeoutMs);
    const windows = msStarted ? planMs(windowsS) : planSeconds(windowsS, qemuVersion, notes);

    const measurements: MeasurementFile['measurements'] = [];
    let samplePages: number | undefined;
    for (const [i, w] of windows.entries()) {
      const unitArgs = w.unit === 'millisecond' ? { 'calc-time-unit': 'millisecond' } : undefined;
      const windowMs = w.unit === 'millisecond' ? w.calcTime : w.calcTime * 1000;
      for (let r = 0; r < repeat; r++) {
        if (!(i === 0 && r === 0 && msStarted)) {
          await exec('calc-dirty-rate', { ...baseArgs, 'calc-time': w.calcTime, ...unitArgs });
        }
        const nth = repeat > 1 ? ` (${r + 1} of ${repeat})` : '';
        progress(`measuring a ${windowMs} ms window${nth}`);
        const info = await pollMeasured(client, w.calcTime, windowMs, unitArgs, timeoutMs);
        const rate = info['dirty-rate'] ?? 0;
        samplePages = info['sample-pages'] || samplePages;
        const pages = (rate * MIB * (windowMs / 1000)) / PAGE_SIZE;
        measurements.push({ windowMs, dirtyRateMiBps: rate, pages });
        progress(`${windowMs} ms${nth}: ${rate} MiB/s (${pages} pages)`);
      }
    }
    return {
      format: 'remus-plan/measurements@1',
      ...(options.guest === undefined ? {} : { guest: options.guest }),
      source: `qemu query-dirty-rate (${options.socketPath})`,
      startedAt,
      pageSize: PAGE_SIZE,
      memoryBytes: memory['base-memory'],
      qemuVersion,
      mode,
      ...(mode === 'page-sampling' && samplePages !== undefined ? { samplePagesPerGiB: samplePages } : {}),
      measurements,
      notes,
    };
  } finally {
    client.close();
  }
}

/** Windows in seconds: finite and positive, returned ascending without duplicates. */
function checkWindows(windowsS: number[]): number[] {
  if (windowsS.length === 0) {
    throw new RwanError('RWAN_ERR_INVALID_VALUE', 'no window to measure', { details: { windowsS } });
  }
  for (const w of windowsS) {
    if (!Number.isFinite(w) || w <= 0) {
      throw new RwanError('RWAN_ERR_INVALID_VALUE', `window ${w} s: expected a positive number of seconds`, {
        details: { windowS: w },
      });
    }
  }
  return [...new Set(windowsS)].sort((a, b) => a - b);
}

/**
 * Start the first window in milliseconds. Returns false (nothing started) when QEMU does not know
 * `calc-time-unit` (before 8.2); any other error propagates.
 */
async function startMs(
  client: QmpClient,
  windowS: number,
  baseArgs: Record<string, unknown>,
  timeoutMs: number,
): Promise<boolean> {
  const args = { ...baseArgs, 'calc-time': Math.round(windowS * 1000), 'calc-time-unit': 'millisecond' };
  try {
    await client.execute('calc-dirty-rate', args, { timeoutMs });
    return true;
  } catch (err) {
    if (
      err instanceof RwanError &&
      err.code === 'RWAN_ERR_QMP' &&
      /calc-time-unit/.test(String(err.details.desc))
    ) {
      return false;
    }
    throw err;
  }
}

function planMs(windowsS: number[]): Window[] {
  const ms = [...new Set(windowsS.map((s) => Math.round(s * 1000)))];
  return ms.map((calcTime) => ({ calcTime, unit: 'millisecond' }));
}

/** Whole-second windows for QEMU < 8.2: round up, merge collisions, explain in `notes`. */
function planSeconds(windowsS: number[], qemuVersion: string, notes: string[]): Window[] {
  const whole = (s: number) => Math.max(1, Math.ceil(s - 1e-9));
  const changed = windowsS.filter((s) => whole(s) !== s);
  if (changed.length > 0) {
    const list = changed.map((s) => `${s} s as ${whole(s)} s`).join(', ');
    notes.push(
      `QEMU ${qemuVersion} takes calc-time in whole seconds only (no calc-time-unit): measured ${list}`,
    );
  }
  return [...new Set(windowsS.map(whole))].map((calcTime) => ({ calcTime, unit: 'second' }));
}

/** Wait until no measurement (ours or someone else's) is running: QEMU refuses a second one. */
async function waitIdle(client: QmpClient, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const info = await client.execute<DirtyRateInfo>('query-dirty-rate', undefined, { timeoutMs });
    if (info.status !== 'measuring') return;
    if (Date.now() > deadline) throw timeout('a dirty-rate measurement already running', timeoutMs);
    await sleep(200);
  }
}

/** Poll `query-dirty-rate` until our run (same `calc-time`) is `measured`; allow the window plus `timeoutMs`. */
async function pollMeasured(
  client: QmpClient,
  calcTime: number,
  windowMs: number,
  unitArgs: Record<string, unknown> | undefined,
  timeoutMs: number,
): Promise<DirtyRateInfo> {
  const interval = Math.max(10, Math.min(windowMs / 4, 200));
  const deadline = Date.now() + windowMs + timeoutMs;
  await sleep(Math.min(windowMs, 50));
  for (;;) {
    const info = await client.execute<DirtyRateInfo>('query-dirty-rate', unitArgs, { timeoutMs });
    if (info.status === 'measured' && info['calc-time'] === calcTime) return info;
    if (Date.now() > deadline) throw timeout(`the ${windowMs} ms window`, windowMs + timeoutMs);
    await sleep(interval);
  }
}

function timeout(what: string, ms: number): RwanError {
  return new RwanError('RWAN_ERR_QMP_TIMEOUT', `QEMU did not finish ${what} within ${ms} ms`, {
    details: { timeoutMs: ms },
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
