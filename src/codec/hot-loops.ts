/**
 * The page codec's hot loops, native when possible (docs/codec.md):
 *
 *   native/remus_native.c ──node-gyp (npm install: tools/build-native.mjs)──▶ remus_native.node ─┐
 *                                                                                                 ├─▶ hot
 *   src/codec/xor-rle.ts (the reference) ──────────────────────────────────────────▶ fallback ──┘
 *
 * Both produce identical bytes, faults and hashes (test/codec/hot-loops.test.ts checks it).
 * `hot` is the addon unless `REMUS_WAN_NATIVE=0` or it is missing or fails to load; then it is the
 * TypeScript fallback, silently (the install step already warned) — `nativeLoadError` says why.
 */
import { existsSync, readSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getSystemErrorMap } from 'node:util';
import { packageRoot } from '../package-root.js';
import type { DeltaFault } from './xor-rle.js';
import * as ref from './xor-rle.js';

/** The hot loops of the codec, one implementation. All byte arrays may sit at any byteOffset. */
export interface HotLoops {
  /** Which implementation this is. */
  readonly kind: 'native' | 'fallback';
  /**
   * XOR-RLE delta from `old` to `now` (same length) into `out` (at least `limit` bytes long).
   * @returns the delta length in bytes, or -1 when it would exceed `limit` bytes
   * @throws RangeError when the lengths differ or `out` is shorter than `limit`; TypeError on a
   *   `limit` that is not a number
   */
  encodeDelta(old: Uint8Array, now: Uint8Array, out: Uint8Array, limit: number): number;
  /** Apply `delta` to `page` in place; on a fault the page is partly written (see xor-rle.ts). */
  applyDelta(page: Uint8Array, delta: Uint8Array): DeltaFault | undefined;
  /**
   * The decoder's per-delta call, fused: {@link HotLoops.applyDelta}, then, when it succeeded, the page
   * hash of the result into `hashOut[0]` (hi) and `hashOut[1]` (lo).
   * @throws RangeError when `hashOut` holds fewer than 2 words
   */
  applyDeltaHash(page: Uint8Array, delta: Uint8Array, hashOut: Uint32Array): DeltaFault | undefined;
  /**
   * The decoder's batch of in-place deltas (one call for a run of records): for each k < `count`,
   * {@link HotLoops.applyDelta} on the page at slot `ops[3k]` of `slab` (bytes `slot × pageSize` on)
   * with `stream[ops[3k+1] .. + ops[3k+2])`, then that page's hash into `hashOut[2k]` (hi) and
   * `hashOut[2k+1]` (lo). Stops at the first fault.
   * @returns the records applied; when fewer than `count`, the next one faulted and its fault number
   *   ({@link faultOf}) is in `hashOut[2 × returned]` (its page is partly written)
   * @throws RangeError, before writing anything, when a slot or a delta lies outside `slab` or
   *   `stream`, `ops` holds fewer than 3 × count words or `hashOut` fewer than 2 × (count + 1)
   */
  applyDeltasHash(
    slab: Uint8Array,
    pageSize: number,
    stream: Uint8Array,
    ops: Int32Array,
    count: number,
    hashOut: Uint32Array,
  ): number;
  /** True when every byte of `page` is 0. */
  isZeroPage(page: Uint8Array): boolean;
  /** The 64-bit page hash (docs/codec.md §3) as unsigned 32-bit halves. Allocates the result. */
  hashPage(page: Uint8Array): { hi: number; lo: number };
  /** The page hash without allocating: hi at `out[2 * index]`, lo at `out[2 * index + 1]`. */
  hashPageInto(page: Uint8Array, out: Uint32Array, index: number): void;
  /**
   * Zero test and page hash in one pass (the encoder's per-page call): true when every byte of `page`
   * is 0; always writes the hash as {@link HotLoops.hashPageInto} does (hi at `out[2 * index]`, lo at
   * `out[2 * index + 1]`).
   * @throws RangeError as hashPageInto does
   */
  classifyPage(page: Uint8Array, out: Uint32Array, index: number): boolean;
  /**
   * The hash of every `pageSize`-byte page of `buf`: page k's hi at `out[2k]`, lo at `out[2k + 1]`.
   * @throws RangeError unless `buf.length` is a multiple of `pageSize` (≥ 1) and `out` holds 2 words per page
   */
  hashPages(buf: Uint8Array, pageSize: number, out: Uint32Array): void;
  /**
   * The encoder's per-page pass, fused (one call, `base` rewritten while it is still in cache):
   * always writes the page hash to `hashOut[0]` (hi) and `hashOut[1]` (lo); returns -2 when every byte
   * of `page` is 0 (`out` and `base` untouched); else -1 when `base` is null; else exactly
   * {@link HotLoops.encodeDelta}`(base, page, out, limit)` — and then, whatever that returned, `base`
   * holds a copy of `page`.
   * @throws RangeError when `base` and `page` lengths differ, `out` is shorter than `limit` or `hashOut`
   *   holds fewer than 2 words; TypeError on a `limit` that is not a number
   */
  encodePage(
    page: Uint8Array,
    base: Uint8Array | null,
    out: Uint8Array,
    limit: number,
    hashOut: Uint32Array,
  ): number;
  /**
   * The capture's scattered read: for k in [`from`, `to`), page `pfns[k]` of the file open as `fd`
   * into `out` bytes `k × pageSize` on; one positional read per run of consecutive pfns (interrupted
   * and short reads continued). Bytes at or past `fileSize`, and past the end of a file that shrank
   * meanwhile, are zeros. Synchronous.
   * @throws RangeError or TypeError, before reading anything, on bad arguments (a pfn that is not a
   *   whole page number below 2^53 bytes, `out` shorter than `to` pages); the read's error (with
   *   `code`, `errno`, `syscall`) when a read fails (`out` is then partly written)
   */
  readPages(
    fd: number,
    pfns: Float64Array,
    from: number,
    to: number,
    pageSize: number,
    fileSize: number,
    out: Uint8Array,
  ): void;
}

/** What native/remus_native.c exports. */
interface NativeAddon {
  encodeDelta(old: Uint8Array, now: Uint8Array, out: Uint8Array, limit: number): number;
  applyDeltasHash(
    slab: Uint8Array,
    pageSize: number,
    stream: Uint8Array,
    ops: Int32Array,
    count: number,
    hashOut: Uint32Array,
  ): number;
  /** 0 ok, 1 truncated, 2 overrun, 3 empty-literal, 4 zero-run. */
  applyDelta(page: Uint8Array, delta: Uint8Array): number;
  /** applyDelta's result; on 0 the hash is in hashOut[0..1]. */
  applyDeltaHash(page: Uint8Array, delta: Uint8Array, hashOut: Uint32Array): number;
  isZeroPage(page: Uint8Array): boolean;
  hashPageInto(page: Uint8Array, out: Uint32Array, index: number): void;
  hashPages(buf: Uint8Array, pageSize: number, out: Uint32Array): void;
  classifyPage(page: Uint8Array, out: Uint32Array, index: number): boolean;
  encodePage(
    page: Uint8Array,
    base: Uint8Array | null,
    out: Uint8Array,
    limit: number,
    hashOut: Uint32Array,
  ): number;
  /** glibc's malloc_trim(0); false elsewhere. */
  trimHeap(): boolean;
  setPipeSize?(fd: number, bytes: number): number;
  setTcpRtoMin?(fd: number, microseconds: number): number;
  setTcpCongestion?(fd: number, name: string): number;
  tcpUnsent?(fd: number): number;
  waitReadable?(fd: number, timeoutMs: number, done: (revents: number) => void): void;
  /** glibc's mallopt M_MMAP_THRESHOLD and M_TRIM_THRESHOLD; false elsewhere. */
  fixMmapThreshold(bytes: number): boolean;
  /** The workload generator's epoch loop (native/workload.c; {@link WorkloadNative}). */
  workloadContext?: WorkloadNative['context'];
  workloadPick?: WorkloadNative['pick'];
  workloadMutate?: WorkloadNative['mutate'];
  /** {@link HotLoops.readPages}, returning 0 or the failed read's -errno. Absent on Windows. */
  readPages?(...args: Parameters<HotLoops['readPages']>): number;
  /** readPages on the thread pool; `done(rc)` afterwards. Absent on Windows. */
  readPagesAsync?(...args: [...Parameters<HotLoops['readPages']>, done: (rc: number) => void]): void;
  /** A shared mapping of bytes [0, length) of the file, or -errno. Absent on Windows. */
  mapFile?(fd: number, length: number, writable: boolean): ArrayBuffer | number;
  /** Detaches and unmaps a buffer from mapFile: 0, or -errno. */
  unmapFile?(buffer: ArrayBuffer): number;
  /** The bytes of whole memory pages inside `view` given back to the system, or -errno. */
  releaseMemory?(view: Uint8Array): number;
  /** Chunk compression on the thread pool (native/zstd_async.c; {@link ZstdAsync}). */
  zstdContext?: ZstdAsync['context'];
  zstdCompressAsync?: ZstdAsync['compress'];
}

/** The addon's fault numbers, in order. */
const FAULTS: readonly (DeltaFault | undefined)[] = [
  undefined,
  'truncated',
  'overrun',
  'empty-literal',
  'zero-run',
];

/** The fault a fault number stands for (0: none), as {@link HotLoops.applyDeltasHash} reports it. */
export function faultOf(n: number): DeltaFault | undefined {
  return FAULTS[n];
}

/** Where node-gyp leaves the addon, relative to the package root. */
const ADDON_PATH = 'native/build/Release/remus_native.node';

function argError<E extends Error>(make: new (message: string) => E, code: string, message: string): E {
  return Object.assign(new make(message), { code });
}

/** The addon's checks of hashPageInto's and classifyPage's `index`. */
function checkIndex(out: Uint32Array, index: number): void {
  if (!Number.isSafeInteger(index) || index < 0) {
    throw argError(RangeError, 'ERR_OUT_OF_RANGE', 'index must be a non-negative integer');
  }
  if (index >= Math.floor(out.length / 2)) {
    throw argError(RangeError, 'ERR_OUT_OF_RANGE', 'out has no room at index');
  }
}

/** A whole number in [min, max] (the addon's get_whole). */
function whole(v: number, min: number, max: number): boolean {
  return typeof v === 'number' && v >= min && v <= max && Number.isInteger(v);
}

/** readPages's argument checks, in the addon's order. */
function checkReadPages(
  ...[fd, pfns, from, to, pageSize, fileSize, out]: Parameters<HotLoops['readPages']>
): void {
  if (!whole(fd, 0, 2147483647))
    throw argError(RangeError, 'ERR_OUT_OF_RANGE', 'fd must be a non-negative integer');
  if (!(pfns instanceof Float64Array))
    throw argError(TypeError, 'ERR_INVALID_ARG_TYPE', 'pfns must be a Float64Array');
  if (!whole(from, 0, pfns.length) || !whole(to, from, pfns.length)) {
    throw argError(
      RangeError,
      'ERR_OUT_OF_RANGE',
      'from and to must be integers with 0 <= from <= to <= pfns.length',
    );
  }
  if (!whole(pageSize, 1, 65536)) {
    throw argError(RangeError, 'ERR_OUT_OF_RANGE', 'pageSize must be an integer from 1 to 65536');
  }
  if (!whole(fileSize, 0, Number.MAX_SAFE_INTEGER)) {
    throw argError(RangeError, 'ERR_OUT_OF_RANGE', 'fileSize must be a non-negative integer');
  }
  if (!(out instanceof Uint8Array))
    throw argError(TypeError, 'ERR_INVALID_ARG_TYPE', 'out must be a Uint8Array');
  if (to * pageSize > out.length) throw argError(RangeError, 'ERR_OUT_OF_RANGE', 'out must hold `to` pages');
  for (let k = from; k < to; k++) {
    const v = pfns[k] as number;
    if (!(v >= 0 && v * pageSize <= Number.MAX_SAFE_INTEGER - pageSize) || !Number.isInteger(v)) {
      throw argError(RangeError, 'ERR_OUT_OF_RANGE', 'a pfn is not a page number');
    }
  }
}

/** The error Node's fs would throw for a failed call (`errno` as libuv gives it: negative). */
function systemError(errno: number, syscall: string): Error {
  const [code, text] = getSystemErrorMap().get(errno) ?? [`E${-errno}`, 'unknown error'];
  return Object.assign(new Error(`${code}: ${text}, ${syscall}`), { errno, code, syscall });
}

/** The TypeScript reference (xor-rle.ts), with the same argument checks as the addon. */
export const fallback: HotLoops = {
  kind: 'fallback',
  encodeDelta(old, now, out, limit) {
    if (old.length !== now.length) {
      throw argError(RangeError, 'ERR_OUT_OF_RANGE', 'old and now must have the same length');
    }
    if (typeof limit !== 'number' || Number.isNaN(limit)) {
      throw argError(TypeError, 'ERR_INVALID_ARG_TYPE', 'limit must be a number');
    }
    if (limit > out.length) throw argError(RangeError, 'ERR_OUT_OF_RANGE', 'out is shorter than limit');
    return ref.encodeDelta(old, now, out, limit);
  },
  applyDelta: ref.applyDelta,
  applyDeltaHash(page, delta, hashOut) {
    if (hashOut.length < 2) throw argError(RangeError, 'ERR_OUT_OF_RANGE', 'hashOut must hold 2 elements');
    const fault = ref.applyDelta(page, delta);
    if (fault === undefined) ref.hashPageInto(page, hashOut, 0);
    return fault;
  },
  applyDeltasHash(slab, pageSize, stream, ops, count, hashOut) {
    // the addon's checks, in its order
    if (!Number.isSafeInteger(pageSize) || pageSize < 1 || pageSize > 65536) {
      throw argError(RangeError, 'ERR_OUT_OF_RANGE', 'pageSize must be an integer from 1 to 65536');
    }
    if (!Number.isSafeInteger(count) || count < 0 || count > 0xffffffff) {
      throw argError(RangeError, 'ERR_OUT_OF_RANGE', 'count must be a non-negative integer');
    }
    if (Math.floor(ops.length / 3) < count) {
      throw argError(RangeError, 'ERR_OUT_OF_RANGE', 'ops must hold 3 words per record');
    }
    if (Math.floor(hashOut.length / 2) < count + 1) {
      throw argError(RangeError, 'ERR_OUT_OF_RANGE', 'hashOut must hold 2 words per record, plus 2');
    }
    for (let k = 0; k < count; k++) {
      const slot = ops[3 * k] as number;
      const at = ops[3 * k + 1] as number;
      const len = ops[3 * k + 2] as number;
      if (slot < 0 || (slot + 1) * pageSize > slab.length) {
        throw argError(RangeError, 'ERR_OUT_OF_RANGE', 'a slot lies outside slab');
      }
      if (at < 0 || len < 0 || at + len > stream.length) {
        throw argError(RangeError, 'ERR_OUT_OF_RANGE', 'a delta lies outside stream');
      }
    }
    for (let k = 0; k < count; k++) {
      const slot = ops[3 * k] as number;
      const at = ops[3 * k + 1] as number;
      const page = slab.subarray(slot * pageSize, (slot + 1) * pageSize);
      const fault = ref.applyDelta(page, stream.subarray(at, at + (ops[3 * k + 2] as number)));
      if (fault !== undefined) {
        hashOut[2 * k] = FAULTS.indexOf(fault);
        return k;
      }
      ref.hashPageInto(page, hashOut, k);
    }
    return count;
  },
  isZeroPage: ref.isZeroPage,
  hashPage: ref.hashPage,
  hashPageInto(page, out, index) {
    checkIndex(out, index);
    ref.hashPageInto(page, out, index);
  },
  classifyPage(page, out, index) {
    checkIndex(out, index);
    return ref.classifyPage(page, out, index);
  },
  hashPages(buf, pageSize, out) {
    if (!Number.isSafeInteger(pageSize) || pageSize < 1) {
      throw argError(RangeError, 'ERR_OUT_OF_RANGE', 'pageSize must be a positive integer');
    }
    if (buf.length % pageSize !== 0) {
      throw argError(RangeError, 'ERR_OUT_OF_RANGE', 'buf length must be a multiple of pageSize');
    }
    if (Math.floor(out.length / 2) < buf.length / pageSize) {
      throw argError(RangeError, 'ERR_OUT_OF_RANGE', 'out must hold 2 words per page');
    }
    ref.hashPages(buf, pageSize, out);
  },
  encodePage(page, base, out, limit, hashOut) {
    // the addon's checks, in its order
    if (typeof limit !== 'number' || Number.isNaN(limit)) {
      throw argError(TypeError, 'ERR_INVALID_ARG_TYPE', 'limit must be a number');
    }
    if (base !== null && base.length !== page.length) {
      throw argError(RangeError, 'ERR_OUT_OF_RANGE', 'base and page must have the same length');
    }
    if (limit > out.length) throw argError(RangeError, 'ERR_OUT_OF_RANGE', 'out is shorter than limit');
    if (hashOut.length < 2) throw argError(RangeError, 'ERR_OUT_OF_RANGE', 'hashOut must hold 2 words');
    return ref.encodePage(page, base, out, limit, hashOut);
  },
  readPages(fd, pfns, from, to, pageSize, fileSize, out) {
    checkReadPages(fd, pfns, from, to, pageSize, fileSize, out);
    for (let i = from; i < to; ) {
      let k = i + 1;
      while (k < to && pfns[k] === (pfns[i] as number) + (k - i)) k++;
      const at = i * pageSize;
      const len = (k - i) * pageSize;
      const position = (pfns[i] as number) * pageSize;
      const avail = Math.max(0, Math.min(len, fileSize - position));
      let got = 0;
      while (got < avail) {
        const r = readSync(fd, out, at + got, avail - got, position + got);
        if (r === 0) break; // shrank meanwhile: the rest reads as zeros
        got += r;
      }
      if (got < len) out.fill(0, at + got, at + len);
      i = k;
    }
  },
};

function wrapAddon(addon: NativeAddon): HotLoops {
  const pair = new Uint32Array(2);
  const readNative = addon.readPages;
  return {
    kind: 'native',
    encodeDelta: addon.encodeDelta, // the addon's functions as they are: no wrapper on the hot path
    applyDelta: (page, delta) => FAULTS[addon.applyDelta(page, delta)],
    applyDeltaHash: (page, delta, hashOut) => FAULTS[addon.applyDeltaHash(page, delta, hashOut)],
    applyDeltasHash: addon.applyDeltasHash,
    isZeroPage: addon.isZeroPage,
    hashPage(page) {
      addon.hashPageInto(page, pair, 0);
      return { hi: pair[0] as number, lo: pair[1] as number };
    },
    hashPageInto: addon.hashPageInto,
    hashPages: addon.hashPages,
    classifyPage: addon.classifyPage,
    encodePage: addon.encodePage,
    readPages:
      readNative === undefined
        ? fallback.readPages
        : (...args) => {
            const r = readNative(...args);
            if (r !== 0) throw systemError(r, 'read');
          },
  };
}

/** The nearest directory at or above `dir` holding a package.json (src/codec/ and dist/src/codec/ alike). */
/** A few inputs both implementations must agree on, to refuse a stale or miscompiled addon. */
function selfCheck(loops: HotLoops): string | undefined {
  const old = new Uint8Array(37);
  const now = new Uint8Array(37);
  for (let i = 0; i < now.length; i++) now[i] = i % 3 === 0 ? i * 7 : 0;
  const a = new Uint8Array(64);
  const b = new Uint8Array(64);
  const na = loops.encodeDelta(old, now, a, 64);
  const nb = fallback.encodeDelta(old, now, b, 64);
  if (na !== nb || a.some((v, i) => v !== b[i])) return 'encodeDelta disagrees with the TypeScript reference';
  const h = loops.hashPage(now.subarray(1));
  const r = fallback.hashPage(now.subarray(1));
  if (h.hi !== r.hi || h.lo !== r.lo) return 'hashPage disagrees with the TypeScript reference';
  if (typeof loops.classifyPage !== 'function') return 'classifyPage is missing (a stale addon?)';
  const c = new Uint32Array(4);
  const d = new Uint32Array(4);
  const zeros = [loops.classifyPage(now, c, 0), loops.classifyPage(old, c, 1)];
  fallback.classifyPage(now, d, 0);
  fallback.classifyPage(old, d, 1);
  if (zeros[0] !== false || zeros[1] !== true || c.some((v, i) => v !== d[i])) {
    return 'classifyPage disagrees with the TypeScript reference';
  }
  if (typeof loops.encodePage !== 'function') return 'encodePage is missing (a stale addon?)';
  const base = [old.slice(), old.slice()];
  const got = [
    loops.encodePage(now, base[0] as Uint8Array, a, 64, c),
    fallback.encodePage(now, base[1] as Uint8Array, b, 64, d),
  ];
  if (got[0] !== got[1] || got[0] !== na || a.some((v, i) => v !== b[i]) || c[0] !== d[0] || c[1] !== d[1]) {
    return 'encodePage disagrees with the TypeScript reference';
  }
  if (base.some((x) => x.some((v, i) => v !== now[i]))) return 'encodePage did not update its base';
  const page = old.slice();
  let fault: DeltaFault | undefined;
  try {
    fault = loops.applyDeltaHash(page, a.subarray(0, na), c);
  } catch {
    return 'applyDeltaHash is missing (a stale addon?)';
  }
  if (fault !== undefined || page.some((v, i) => v !== now[i]) || c[0] !== d[0] || c[1] !== d[1]) {
    return 'applyDeltaHash disagrees with the TypeScript reference';
  }
  if (typeof loops.applyDeltasHash !== 'function') return 'applyDeltasHash is missing (a stale addon?)';
  const slab = old.slice();
  const e = new Uint32Array(4);
  const applied = loops.applyDeltasHash(slab, slab.length, a, Int32Array.of(0, 0, na), 1, e);
  if (applied !== 1 || slab.some((v, i) => v !== now[i]) || e[0] !== d[0] || e[1] !== d[1]) {
    return 'applyDeltasHash disagrees with the TypeScript reference';
  }
  return undefined;
}

interface Loaded {
  loops?: HotLoops;
  trimHeap?: () => boolean;
  setPipeSize?: ((fd: number, bytes: number) => number) | undefined;
  setTcpRtoMin?: ((fd: number, microseconds: number) => number) | undefined;
  setTcpCongestion?: ((fd: number, name: string) => number) | undefined;
  tcpUnsent?: ((fd: number) => number) | undefined;
  waitReadable?: ((fd: number, timeoutMs: number) => Promise<number>) | undefined;
  fixMmapThreshold?: (bytes: number) => boolean;
  mapFile?: ((fd: number, length: number, writable: boolean) => FileMapping) | undefined;
  releaseMemory?: ((view: Uint8Array) => number) | undefined;
  readPagesAsync?: ((...args: Parameters<HotLoops['readPages']>) => Promise<void>) | undefined;
  workload?: WorkloadNative | undefined;
  zstd?: ZstdAsync | undefined;
  error?: string;
}

/** {@link mapFile} over the addon's mapFile and unmapFile. */
function mapper(addon: NativeAddon): Loaded['mapFile'] {
  const { mapFile: map, unmapFile: unmap } = addon;
  if (map === undefined || unmap === undefined) return undefined;
  return (fd, length, writable) => {
    const r = map(fd, length, writable);
    if (typeof r === 'number') throw systemError(r, 'mmap');
    let mapped = true;
    return {
      bytes: new Uint8Array(r),
      unmap() {
        if (!mapped) return;
        mapped = false;
        const rc = unmap(r);
        if (rc !== 0) throw systemError(rc, 'munmap');
      },
    };
  };
}

/** {@link readPagesAsync} over the addon's readPagesAsync. */
function asyncReader(addon: NativeAddon): Loaded['readPagesAsync'] {
  const read = addon.readPagesAsync;
  if (read === undefined) return undefined;
  return (...args) => {
    let settle: (rc: number) => void = () => undefined;
    const done = new Promise<void>((resolve, reject) => {
      settle = (rc) => (rc === 0 ? resolve() : reject(systemError(rc, 'read')));
    });
    read(...args, (rc) => settle(rc)); // throws on a bad argument, as readPages does
    return done;
  };
}

function loadNative(): Loaded {
  if (process.env.REMUS_WAN_NATIVE === '0') return { error: 'disabled by REMUS_WAN_NATIVE=0' };
  try {
    const root = packageRoot(dirname(fileURLToPath(import.meta.url)));
    if (root === undefined) return { error: 'package root not found' };
    const file = join(root, ADDON_PATH);
    if (!existsSync(file)) return { error: `${ADDON_PATH} not found (run: node tools/build-native.mjs)` };
    const addon = createRequire(import.meta.url)(file) as NativeAddon;
    const loops = wrapAddon(addon);
    const wrong = selfCheck(loops);
    return wrong === undefined
      ? {
          loops,
          trimHeap: addon.trimHeap,
          setPipeSize: addon.setPipeSize,
          setTcpRtoMin: addon.setTcpRtoMin,
          setTcpCongestion: addon.setTcpCongestion,
          tcpUnsent: addon.tcpUnsent,
          waitReadable: addon.waitReadable
            ? (fd: number, timeoutMs: number) =>
                new Promise<number>((resolve) => addon.waitReadable?.(fd, timeoutMs, resolve))
            : undefined,
          fixMmapThreshold: addon.fixMmapThreshold,
          mapFile: mapper(addon),
          releaseMemory: addon.releaseMemory,
          readPagesAsync: asyncReader(addon),
          workload:
            addon.workloadContext && addon.workloadPick && addon.workloadMutate
              ? { context: addon.workloadContext, pick: addon.workloadPick, mutate: addon.workloadMutate }
              : undefined,
          zstd:
            addon.zstdContext && addon.zstdCompressAsync
              ? { context: addon.zstdContext, compress: addon.zstdCompressAsync }
              : undefined,
        }
      : { error: `self-check failed: ${wrong}` };
  } catch (err) {
    return { error: (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '' };
  }
}

const loaded = loadNative();

/** The native hot loops, or undefined when not loaded (see {@link nativeLoadError}). */
export const native: HotLoops | undefined = loaded.loops;

/** Why {@link native} is undefined (missing addon, load error, `REMUS_WAN_NATIVE=0`). */
export const nativeLoadError: string | undefined = loaded.error;

/** The implementation the codec uses: {@link native} when loaded, else {@link fallback}. */
export const hot: HotLoops = native ?? fallback;

/**
 * Give the C heap's free memory back to the system (glibc's malloc_trim, through the addon); false
 * when none was, or where that cannot be done (no addon, another C library). Buffers live on that
 * heap, and glibc returns freed memory on its own only from the top of it, so a daemon whose
 * buffers come and go (chunks, frames, reads) otherwise keeps tens of MiB it no longer uses.
 */
export const trimHeap: () => boolean = loaded.trimHeap ?? (() => false);

/**
 * Set a pipe's capacity (Linux fcntl F_SETPIPE_SZ, through the addon): at least `bytes`, rounded up
 * to a page, one page at the least. Returns the capacity, or −errno (EBADF, not a pipe: EBADF or
 * EINVAL; above /proc/sys/fs/pipe-max-size: EPERM); undefined without the addon.
 */
export const setPipeSize: ((fd: number, bytes: number) => number) | undefined = loaded.setPipeSize;

/**
 * Set a TCP socket's lower bound on the retransmission timeout (Linux TCP_RTO_MIN_US, 6.15 and later,
 * through the addon). Returns 0 or −errno (ENOPROTOOPT: an older kernel); undefined without the addon.
 */
export const setTcpRtoMin: ((fd: number, microseconds: number) => number) | undefined = loaded.setTcpRtoMin;

/**
 * Set a TCP socket's congestion control (Linux TCP_CONGESTION, through the addon). Returns 0 or −errno
 * (ENOENT: not available in this kernel; EPERM: not in the allowed list, without CAP_NET_ADMIN);
 * undefined without the addon.
 */
export const setTcpCongestion: ((fd: number, name: string) => number) | undefined = loaded.setTcpCongestion;

/**
 * The bytes written to a TCP socket that it has not sent yet (Linux ioctl SIOCOUTQNSD, through the
 * addon): what waits for the congestion window or the pacing. Returns the count or −errno; undefined
 * without the addon.
 */
export const tcpUnsent: ((fd: number) => number) | undefined = loaded.tcpUnsent;

/**
 * Wait, on the thread pool, at most `timeoutMs` for `fd` to have something to read (poll POLLIN).
 * Resolves with poll's revents (0: timed out; POLLIN or POLLHUP: a read will not block), or −errno;
 * undefined without the addon. Bounded, unlike a blocking read on the pool, which would keep the
 * process from exiting while nobody writes to the fd.
 */
export const waitReadable: ((fd: number, timeoutMs: number) => Promise<number>) | undefined =
  loaded.waitReadable;

/**
 * Make every C heap block of at least `bytes` a memory mapping of its own, unmapped when freed (glibc's
 * M_MMAP_THRESHOLD, with M_TRIM_THRESHOLD at the same value); false where that cannot be done (no
 * addon, another C library). glibc's default starts at 128 KiB and rises to the size of each large
 * block freed, up to 32 MiB, after which buffers of MiBs (captures, chunks, decoded epochs) come from
 * the arenas and their memory stays there; a fixed threshold gives it back when they are freed.
 * @throws TypeError (code ERR_INVALID_ARG_TYPE) when `bytes` is not a number; RangeError
 *   (ERR_OUT_OF_RANGE) outside [4096, 32 MiB]
 */
export const fixMmapThreshold: (bytes: number) => boolean = loaded.fixMmapThreshold ?? (() => false);

/** A shared mapping of a file's bytes (see {@link mapFile}). */
export interface FileMapping {
  /** The file's bytes [0, length): stores reach the file's page cache at once, as a pwrite would. */
  readonly bytes: Uint8Array;
  /** Unmap (idempotent): every view over {@link FileMapping.bytes} becomes empty. */
  unmap(): void;
}

/**
 * Map bytes [0, `length`) of the file open as `fd` (mmap MAP_SHARED, read-only unless `writable`),
 * through the addon; undefined without it (use pread/pwrite then). The file must hold `length` bytes
 * for as long as the mapping is used: touching a page past its end kills the process (SIGBUS). The
 * mapping's resident pages count in the process's RSS, so the daemons do not map their files.
 * @throws Error as Node's fs would (`code`, `errno`, `syscall: 'mmap'`)
 */
export const mapFile: ((fd: number, length: number, writable: boolean) => FileMapping) | undefined =
  loaded.mapFile;

/**
 * Give the memory under `view` back to the system now (whole pages inside it; Linux, through the
 * addon): for a large buffer that nothing will read again but that the garbage collector frees only
 * later — a SharedArrayBuffer, in particular, only once every thread that saw it collected it. Its
 * bytes read as zeros afterwards. Returns the bytes released (0 where this cannot be done).
 * @throws Error as Node's fs would (`syscall: 'madvise'`)
 */
export function releaseMemory(view: Uint8Array): number {
  const r = loaded.releaseMemory?.(view) ?? 0;
  if (r < 0) throw systemError(r, 'madvise');
  return r;
}

/**
 * {@link HotLoops.readPages} on libuv's thread pool (the addon; undefined without it, and on
 * Windows): the same checks, thrown at the call, and the same reads, after which the promise settles
 * (rejected as Node's fs would, `syscall: 'read'`). `pfns` and `out` must not change meanwhile, nor
 * the file descriptor be closed.
 */
export const readPagesAsync: ((...args: Parameters<HotLoops['readPages']>) => Promise<void>) | undefined =
  loaded.readPagesAsync;

/**
 * The workload generator's epoch loop in C (native/workload.c), byte-identical to the TypeScript one
 * in tools/workload/generator.ts, which is its only user: a benchmark's page writes then cost the
 * cores the daemons share a fraction of what they cost in TypeScript. The arrays passed to `context`
 * must outlive the handle.
 */
export interface WorkloadNative {
  /** A handle over the generator's arrays; scalars: [pageSize, seedHash, heapHi, mmapHi, clockBase]. */
  context(
    memory: Uint8Array,
    rng: Uint32Array,
    kind: Uint8Array,
    cursor: Uint32Array,
    mark: Uint32Array,
    hits: Uint32Array,
    picked: Uint32Array,
    aliasProb: Float64Array,
    alias: Uint32Array,
    rankToPfn: Uint32Array,
    mixCdf: Float64Array,
    contentCdf: Float64Array,
    poolBytes: Uint8Array,
    poolStart: Uint32Array,
    poolLen: Uint32Array,
    poolNumAt: Uint32Array,
    scalars: Float64Array,
  ): object;
  /** An epoch's draws into picked[0 .. count) (and hits); returns count. */
  pick(handle: object, stamp: number, target: number): number;
  /** Mutate pages picked[from .. to) of epoch `epoch`, in order. */
  mutate(handle: object, from: number, to: number, epoch: number): void;
}

/** The native workload loop, or undefined without the addon. */
export const workloadNative: WorkloadNative | undefined = loaded.workload;

/**
 * zstd compression on libuv's thread pool (native/zstd_async.c over zstd-napi's own zstd): the
 * compression of a chunk runs in parallel with the thread that made it, without a worker thread's
 * second JavaScript engine.
 */
export interface ZstdAsync {
  /** A compression context at `level` (one job at a time). */
  context(level: number): object;
  /**
   * Compress `src` into `dst` (at least zstd's compress bound of `src.length` bytes) as one zstd frame
   * on the thread pool; `done(error, bytes)` runs on this thread afterwards. Neither buffer may be
   * touched until then; a context already compressing throws.
   */
  compress(
    ctx: object,
    src: Uint8Array,
    dst: Uint8Array,
    done: (error: string | null, bytes: number) => void,
  ): void;
}

/** Thread-pool zstd, or undefined without the addon. */
export const zstdAsync: ZstdAsync | undefined = loaded.zstd;
