import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import {
  copyFile,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  truncate,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RwanError } from '../../src/errors.js';
import { ImageDigest } from '../../src/replication/image-digest.js';
import {
  type EpochOptions,
  FAULT_POINTS,
  type FaultPoint,
  JOURNAL_FILE,
  JOURNAL_PREV_FILE,
  REPLICA_FILE,
  type Replayer,
  ReplicaStore,
  STATE_FILE,
  type StoreOptions,
  sidecarFile,
} from '../../src/replication/store.js';
import { codeOf, codeOfAsync } from '../helpers.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..', '..');
const SESSION_A = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';
const SESSION_B = '0123456789abcdef0123456789ABCDEF';

/** One epoch as the tests plan it: its options and its pages in add order (null = zero page). */
interface Planned extends EpochOptions {
  epoch: number;
  pages: Array<[number, Buffer | null]>;
}

function randomPage(r: () => number, pageSize: number): Buffer {
  const b = Buffer.allocUnsafe(pageSize);
  for (let o = 0; o < pageSize; o += 4) b.writeUInt32LE(r(), o);
  return b;
}

/**
 * A seeded epoch: a full one carries all but a few pages of the image (shuffled), a non-full one
 * 1..maxPages distinct random pages; about one page in six is a zero page.
 */
function genEpoch(
  r: () => number,
  epoch: number,
  o: EpochOptions,
  pageSize: number,
  maxPages: number,
  zeroEvery = 6,
): Planned {
  const n = o.imageBytes / pageSize;
  const pfns = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = r() % (i + 1);
    [pfns[i], pfns[j]] = [pfns[j] as number, pfns[i] as number];
  }
  const count = o.full ? n - Math.min(3, n >> 3) : 1 + (r() % Math.min(maxPages, n));
  const pages = pfns
    .slice(0, count)
    .map((pfn): [number, Buffer | null] => [pfn, r() % zeroEvery === 0 ? null : randomPage(r, pageSize)]);
  return { epoch, ...o, pages };
}

/** The replica after `ep`, given the one before. */
function applyModel(model: Buffer, ep: Planned, pageSize: number): Buffer {
  const next = ep.full ? Buffer.alloc(ep.imageBytes) : model;
  for (const [pfn, page] of ep.pages) {
    if (page === null) next.fill(0, pfn * pageSize, (pfn + 1) * pageSize);
    else page.copy(next, pfn * pageSize);
  }
  return next;
}

/**
 * Commit `ep`; with `payload`, also hand the store the test's encoding of its pages
 * ({@link payloadOf}), which the journal then keeps instead of the pages unless they spill.
 */
async function commitEpoch(store: ReplicaStore, ep: Planned, payload = false): Promise<void> {
  const w = store.beginEpoch(ep.epoch, { full: ep.full, imageBytes: ep.imageBytes, sessionId: ep.sessionId });
  for (const [pfn, page] of ep.pages) w.addPage(pfn, page);
  if (payload) w.setPayload(payloadOf(ep));
  await w.commit();
}

/** The kill -9 test's child process, whose random source and payload encoding the tests share. */
const child = (await import(pathToFileURL(join(HERE, 'store-crash-child.mjs')).href)) as {
  prng: (seed: number) => () => number;
  plan: (seed: number, k: number) => Planned;
  payloadOf: (pages: Planned['pages']) => Buffer[];
  decodePayload: (payload: Buffer, pageSize: number, out: (pfn: number, page: Buffer | null) => void) => void;
  replayer: (pageSize: number) => NonNullable<StoreOptions['replayer']>;
  sidecarOf: (epoch: number, held: Map<number, Buffer>) => Buffer[];
  PAGE_SIZE: number;
  STAGING_BYTES: number;
};

/** The tests' payload of `ep` (the child's encoding). */
const payloadOf = (ep: Planned): Buffer[] => child.payloadOf(ep.pages);
const { prng } = child;

/** What a replayer was given for one epoch. */
interface Replayed {
  epoch: number;
  full: boolean;
  via: 'pages' | 'payload';
  pages: Array<[number, Buffer | null]>;
}

/** `o` with a replayer that logs into `log` and decodes {@link payloadOf}; `sidecars` gets its arguments. */
function replaying(
  o: StoreOptions,
  log: Replayed[],
  sidecars: Array<[string | null, number | null]> = [],
): StoreOptions {
  const ps = o.pageSize;
  return {
    ...o,
    replayer: (sidecar, epoch) => {
      sidecars.push([sidecar?.toString() ?? null, epoch]);
      let cur: Replayed | undefined;
      return {
        begin: (e) => {
          cur = { epoch: e.epoch, full: e.full, via: 'pages', pages: [] };
          log.push(cur);
        },
        page: (pfn, page) => cur?.pages.push([pfn, page === null ? null : Buffer.from(page)]),
        decode: (payload, out) => {
          const c = cur as Replayed;
          c.via = 'payload';
          child.decodePayload(payload, ps, (pfn, page) => {
            out(pfn, page);
            c.pages.push([pfn, page === null ? null : Buffer.from(page)]);
          });
        },
      };
    },
  };
}

/** What {@link replaying} logs for `ep`, journaled as pages or as its payload. */
const replayedOf = (ep: Planned, via: Replayed['via'] = 'pages'): Replayed => ({
  epoch: ep.epoch,
  full: ep.full,
  via,
  pages: ep.pages,
});

/** First offset where `a` and `b` differ (or where one ends), −1 when equal. */
function firstDiff(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

/**
 * The replica file equals `model`, and so does every `step`-th page through readPage (and two past
 * the end).
 */
async function expectReplica(store: ReplicaStore, model: Buffer, pageSize: number, step = 1): Promise<void> {
  expect(firstDiff(await readFile(store.replicaPath), model)).toBe(-1);
  const page = new Uint8Array(pageSize);
  const zero = new Uint8Array(pageSize);
  const n = model.length / pageSize;
  for (let pfn = 0; pfn < n + 2; pfn += pfn < n ? step : 1) {
    page.fill(0xee);
    await store.readPage(pfn, page);
    expect(firstDiff(page, pfn < n ? model.subarray(pfn * pageSize, (pfn + 1) * pageSize) : zero)).toBe(-1);
  }
}

let root = '';
let dirs = 0;
const freshDir = () => join(root, `store-${dirs++}`);

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'rwan-store-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('ReplicaStore round trip', () => {
  it('follows a seeded sequence of epochs, survives reopen, and returns the checkpoint sidecar', async () => {
    const ps = 4096;
    const r = prng(20240611);
    const dir = freshDir();
    let log: Replayed[] = [];
    const sidecars: Array<[string | null, number | null]> = [];
    const opts = (): StoreOptions => {
      log = [];
      return replaying({ dir, pageSize: ps, stagingBytes: 16 * ps }, log, sidecars);
    };
    // odd epochs come with a payload, which the journal keeps unless their pages spill (> 16)
    const viaOf = (ep: Planned): Replayed['via'] =>
      ep.epoch % 2 === 1 && ep.pages.filter(([, p]) => p !== null).length <= 16 ? 'payload' : 'pages';
    const commit = (st: ReplicaStore, ep: Planned) => commitEpoch(st, ep, viaOf(ep) === 'payload');
    const a: EpochOptions = { full: false, imageBytes: 48 * ps, sessionId: SESSION_A };
    let { store, recovery } = await ReplicaStore.open(opts());
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect(recovery).toEqual({ replayedEpochs: [], truncatedBytes: 0, sidecar: null, sidecarEpoch: null });
    expect(sidecars).toEqual([[null, null]]);
    expect(store.state).toEqual({ sessionId: null, imageBytes: 0, appliedEpoch: null, committedEpoch: null });

    let model: Buffer = Buffer.alloc(0);
    const epochs: Planned[] = [];
    let epoch = 3;
    epochs.push(genEpoch(r, epoch, { ...a, full: true }, ps, 0));
    for (let i = 0; i < 12; i++) {
      epoch += 1 + (r() % 3);
      epochs.push(genEpoch(r, epoch, a, ps, 24));
    }
    for (const ep of epochs) {
      await commit(store, ep);
      model = applyModel(model, ep, ps);
      expect(store.state).toEqual({
        sessionId: SESSION_A,
        imageBytes: 48 * ps,
        appliedEpoch: null,
        committedEpoch: ep.epoch,
      });
      await expectReplica(store, model, ps);
    }
    await store.close();

    ({ store, recovery } = await ReplicaStore.open(opts()));
    expect(recovery.replayedEpochs).toEqual(epochs.map((e) => e.epoch));
    expect(recovery.truncatedBytes).toBe(0);
    expect(log).toEqual(epochs.map((ep) => replayedOf(ep, viaOf(ep))));
    expect(store.state).toEqual({
      sessionId: SESSION_A,
      imageBytes: 48 * ps,
      appliedEpoch: null,
      committedEpoch: epoch,
    });
    await expectReplica(store, model, ps);

    const sidecar = Buffer.from(`page cache snapshot at ${epoch}`);
    await store.checkpoint(sidecar);
    sidecar.fill(0); // the store keeps its own copy
    expect(store.state.appliedEpoch).toBe(epoch);
    expect((await stat(join(dir, JOURNAL_FILE))).size).toBe(0);
    const checkpointed = epoch;

    // a new session: numbering restarts, the image grows
    const b: EpochOptions = { full: false, imageBytes: 80 * ps, sessionId: SESSION_B };
    const after: Planned[] = [genEpoch(r, 0, { ...b, full: true }, ps, 0)];
    for (let k = 1; k <= 5; k++) after.push(genEpoch(r, k, b, ps, 30));
    for (const ep of after) {
      await commit(store, ep);
      model = applyModel(model, ep, ps);
      await expectReplica(store, model, ps);
    }
    expect(store.state).toEqual({
      sessionId: SESSION_B.toLowerCase(),
      imageBytes: 80 * ps,
      appliedEpoch: checkpointed,
      committedEpoch: 5,
    });
    await store.close();

    sidecars.length = 0;
    ({ store, recovery } = await ReplicaStore.open(opts()));
    expect(recovery.sidecar?.toString()).toBe(`page cache snapshot at ${checkpointed}`);
    expect(recovery.sidecarEpoch).toBe(checkpointed);
    expect(sidecars).toEqual([[`page cache snapshot at ${checkpointed}`, checkpointed]]);
    expect(recovery.replayedEpochs).toEqual([0, 1, 2, 3, 4, 5]);
    expect(log).toEqual(after.map((ep) => replayedOf(ep, viaOf(ep))));
    expect(store.state).toEqual({
      sessionId: SESSION_B.toLowerCase(),
      imageBytes: 80 * ps,
      appliedEpoch: checkpointed,
      committedEpoch: 5,
    });
    await expectReplica(store, model, ps);

    // still usable after recovery; a checkpoint without a sidecar reports none
    const more = genEpoch(r, 6, b, ps, 10);
    await commitEpoch(store, more);
    model = applyModel(model, more, ps);
    await expectReplica(store, model, ps);
    await store.checkpoint(null);
    await store.close();
    ({ store, recovery } = await ReplicaStore.open(opts()));
    expect(recovery).toMatchObject({ replayedEpochs: [], sidecar: null, sidecarEpoch: null });
    expect(log).toEqual([]);
    expect(store.state).toEqual({
      sessionId: SESSION_B.toLowerCase(),
      imageBytes: 80 * ps,
      appliedEpoch: 6,
      committedEpoch: 6,
    });
    await expectReplica(store, model, ps);
    await store.close();
  });

  it('a full epoch shrinks the image and zeroes the pages it did not carry; empty epochs commit', async () => {
    const ps = 512;
    const { store } = await ReplicaStore.open({ dir: freshDir(), pageSize: ps, fsync: false });
    const r = prng(7);
    let model: Buffer = Buffer.alloc(0);
    for (const ep of [
      genEpoch(r, 0, { full: true, imageBytes: 32 * ps, sessionId: SESSION_A }, ps, 0, 1000),
      {
        epoch: 1,
        full: true,
        imageBytes: 8 * ps,
        sessionId: SESSION_A,
        pages: [[3, randomPage(r, ps)]],
      } as Planned,
      { epoch: 2, full: false, imageBytes: 8 * ps, sessionId: SESSION_A, pages: [] } as Planned,
    ]) {
      await commitEpoch(store, ep);
      model = applyModel(model, ep, ps);
      await expectReplica(store, model, ps);
    }
    expect(store.state.committedEpoch).toBe(2);
    await store.close();
  });

  it('checkpointDue turns true past checkpointBytes and false after a checkpoint', async () => {
    const ps = 512;
    const { store } = await ReplicaStore.open({
      dir: freshDir(),
      pageSize: ps,
      fsync: false,
      checkpointBytes: 3000,
    });
    const r = prng(3);
    await commitEpoch(
      store,
      genEpoch(r, 0, { full: true, imageBytes: 4 * ps, sessionId: SESSION_A }, ps, 0, 1000),
    );
    expect(store.checkpointDue).toBe(false); // 4 pages: about 2.2 KB of journal
    await commitEpoch(
      store,
      genEpoch(r, 1, { full: false, imageBytes: 4 * ps, sessionId: SESSION_A }, ps, 4, 1000),
    );
    expect(store.checkpointDue).toBe(true);
    await store.checkpoint(null);
    expect(store.checkpointDue).toBe(false);
    await store.close();
  });
});

describe('ReplicaStore spill', () => {
  it('commits an epoch larger than stagingBytes, and abort of a spilled epoch restores the journal', async () => {
    const ps = 512;
    const dir = freshDir();
    const log: Replayed[] = [];
    const opts = replaying({ dir, pageSize: ps, stagingBytes: 4 * ps + 100 }, log);
    const r = prng(99);
    const o: EpochOptions = { full: false, imageBytes: 64 * ps, sessionId: SESSION_A };
    const { store } = await ReplicaStore.open(opts);
    let model: Buffer = Buffer.alloc(0);
    const first = genEpoch(r, 0, { ...o, full: true }, ps, 0);
    await commitEpoch(store, first);
    model = applyModel(model, first, ps);
    await expectReplica(store, model, ps);

    const journal = join(dir, JOURNAL_FILE);
    const before = await readFile(journal);
    const w = store.beginEpoch(1, o);
    for (let pfn = 0; pfn < 30; pfn++) w.addPage(pfn, randomPage(r, ps));
    const spilled = (await stat(journal)).size;
    expect(spilled).toBeGreaterThan(before.length + 28 * ps); // 7 spills of 4 pages
    await w.abort();
    expect(firstDiff(await readFile(journal), before)).toBe(-1);
    expect(codeOf(() => w.addPage(60, null))).toBe('RWAN_ERR_INVALID_VALUE');
    await expectReplica(store, model, ps);

    const big: Planned = {
      epoch: 1,
      ...o,
      pages: Array.from({ length: 40 }, (_, i): [number, Buffer | null] => [
        (i * 37) % 64,
        i % 5 === 4 ? null : randomPage(r, ps),
      ]),
    };
    await commitEpoch(store, big, true); // it spills: the journal keeps its pages, not the payload
    model = applyModel(model, big, ps);
    await expectReplica(store, model, ps);
    await store.close();

    const reopened = await ReplicaStore.open(opts);
    expect(reopened.recovery.replayedEpochs).toEqual([0, 1]);
    expect(reopened.recovery.truncatedBytes).toBe(0);
    expect(log).toEqual([replayedOf(first), replayedOf(big)]);
    await expectReplica(reopened.store, model, ps);
    await reopened.store.close();
  });
  it('an epoch of thousands of pages, unsorted, spilled many times and applied in batches', async () => {
    const ps = 512;
    const n = 12_000;
    const dir = freshDir();
    const log: Replayed[] = [];
    const opts = replaying({ dir, pageSize: ps, fsync: false, stagingBytes: 64 * ps }, log);
    const r = prng(4);
    const o: EpochOptions = { full: false, imageBytes: n * ps, sessionId: SESSION_A };
    const { store } = await ReplicaStore.open(opts);
    const first: Planned = {
      epoch: 0,
      ...o,
      full: true,
      pages: Array.from({ length: n }, (_, i): [number, Buffer | null] => [
        i,
        i % 3 ? randomPage(r, ps) : null,
      ]),
    };
    const second: Planned = {
      epoch: 1,
      ...o,
      pages: Array.from({ length: 10_000 }, (_, i): [number, Buffer | null] => [
        n - 1 - 2 * (i % 6000) - (i >= 6000 ? 1 : 0),
        i % 2 ? Buffer.alloc(ps, i & 255) : null,
      ]),
    };
    let model: Buffer = Buffer.alloc(0);
    for (const ep of [first, second]) {
      await commitEpoch(store, ep);
      model = applyModel(model, ep, ps);
      await expectReplica(store, model, ps, 97);
    }
    await store.close();
    const reopened = await ReplicaStore.open(opts);
    // (compared by digest: a deep comparison of 22 000 pages takes seconds)
    const brief = (e: Replayed) => ({
      ...e,
      pages: e.pages.map(([pfn, page]) => [pfn, page && createHash('sha1').update(page).digest('hex')]),
    });
    expect(log.map(brief)).toEqual([replayedOf(first), replayedOf(second)].map(brief));
    await expectReplica(reopened.store, model, ps, 97);
    await reopened.store.close();
  });
});

describe('ReplicaStore torn journal tail', () => {
  const ps = 512;
  const o: EpochOptions = { full: false, imageBytes: 8 * ps, sessionId: SESSION_A };
  let base = '';
  let journal: Buffer = Buffer.alloc(0);
  let replicaBefore: Buffer = Buffer.alloc(0);
  let modelBefore: Buffer = Buffer.alloc(0);
  let modelLast: Buffer = Buffer.alloc(0);
  const starts: number[] = [];

  beforeAll(async () => {
    base = freshDir();
    const r = prng(5);
    const { store } = await ReplicaStore.open({ dir: base, pageSize: ps, fsync: false });
    let model: Buffer = Buffer.alloc(0);
    const eps = [
      genEpoch(r, 0, { ...o, full: true }, ps, 0),
      genEpoch(r, 1, o, ps, 4),
      genEpoch(r, 2, o, ps, 4),
      {
        epoch: 3,
        ...o,
        pages: [
          [6, randomPage(r, ps)],
          [1, null],
          [4, randomPage(r, ps)],
        ],
      } as Planned,
    ];
    for (const ep of eps) {
      starts.push((await stat(join(base, JOURNAL_FILE))).size);
      if (ep.epoch === 3) {
        replicaBefore = await readFile(join(base, REPLICA_FILE));
        modelBefore = Buffer.from(model);
      }
      await commitEpoch(store, ep);
      model = applyModel(model, ep, ps);
    }
    modelLast = model;
    journal = await readFile(join(base, JOURNAL_FILE));
    await store.close();
    expect(firstDiff(replicaBefore, modelBefore)).toBe(-1);
  });

  /** A store directory whose journal is `bytes` and whose replica is as before epoch 3 was applied. */
  async function setUp(bytes: Buffer): Promise<string> {
    const dir = join(root, 'torn');
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir);
    await copyFile(join(base, STATE_FILE), join(dir, STATE_FILE));
    await writeFile(join(dir, REPLICA_FILE), replicaBefore);
    await writeFile(join(dir, JOURNAL_FILE), bytes);
    return dir;
  }

  /**
   * Offsets of a record to damage: every byte of its header, segment head, index and trailer, and in
   * the page data every `dataStep`-th byte plus the two bytes either side of each page boundary.
   */
  function sample(start: number, end: number, dataStep: number, metaStep = 1): number[] {
    const out = new Set<number>();
    const pages = journal.readUInt32LE(start + 64 + 4); // the records here have one segment
    const data = start + 64 + 16 + 8 * pages + Math.ceil(pages / 8) * 8;
    for (let i = start; i < data; i += metaStep) out.add(i);
    for (let i = end - 64; i < end; i += metaStep) out.add(i);
    for (let i = data; i < end - 64; i += dataStep) out.add(i);
    for (let b = data; b <= end - 64; b += ps) for (let d = -2; d < 2; d++) out.add(b + d);
    return [...out].filter((i) => i >= start && i < end).sort((x, y) => x - y);
  }

  it('cut inside the last record (every metadata byte, dense in the data): recovers the previous epoch', async () => {
    const last = starts[3] as number;
    expect(journal.length - last).toBe(64 + 16 + 3 * 8 + 8 + 2 * ps + 64); // the layout of docs/replica-store.md
    const cuts = sample(last, journal.length, 17);
    expect(cuts.length).toBeGreaterThan(220);
    const dir = await setUp(journal);
    for (const cut of cuts) {
      await writeFile(join(dir, JOURNAL_FILE), journal.subarray(0, cut));
      await writeFile(join(dir, REPLICA_FILE), replicaBefore);
      const { store, recovery } = await ReplicaStore.open({ dir, pageSize: ps, fsync: false });
      expect(recovery.replayedEpochs).toEqual([0, 1, 2]);
      expect(recovery.truncatedBytes).toBe(cut - last);
      expect(store.state.committedEpoch).toBe(2);
      expect(firstDiff(await readFile(store.replicaPath), modelBefore)).toBe(-1);
      expect((await stat(join(dir, JOURNAL_FILE))).size).toBe(last);
      await store.close();
    }
    // the whole record: epoch 3 is replayed
    await writeFile(join(dir, JOURNAL_FILE), journal);
    await writeFile(join(dir, REPLICA_FILE), replicaBefore);
    const { store, recovery } = await ReplicaStore.open({ dir, pageSize: ps, fsync: false });
    expect(recovery).toMatchObject({ replayedEpochs: [0, 1, 2, 3], truncatedBytes: 0 });
    await expectReplica(store, modelLast, ps);
    await store.close();
  });

  it('garbage after the last complete record, or a damaged last record, is a torn tail', async () => {
    const end = journal.length;
    for (const tail of [Buffer.alloc(4096), Buffer.from('RWJH and then nothing useful')]) {
      const dir = await setUp(Buffer.concat([journal, tail]));
      const { store, recovery } = await ReplicaStore.open({ dir, pageSize: ps, fsync: false });
      expect(recovery).toMatchObject({ replayedEpochs: [0, 1, 2, 3], truncatedBytes: tail.length });
      expect((await stat(join(dir, JOURNAL_FILE))).size).toBe(end);
      await store.close();
    }
    for (const at of [starts[3] as number, (starts[3] as number) + 200, end - 1]) {
      const bytes = Buffer.from(journal);
      bytes[at] = (bytes[at] as number) ^ 0x40;
      const dir = await setUp(bytes);
      const { store, recovery } = await ReplicaStore.open({ dir, pageSize: ps, fsync: false });
      expect(recovery).toMatchObject({
        replayedEpochs: [0, 1, 2],
        truncatedBytes: end - (starts[3] as number),
      });
      expect(firstDiff(await readFile(store.replicaPath), modelBefore)).toBe(-1);
      await store.close();
    }
  });

  it('a flipped byte inside an earlier record is RWAN_ERR_STORE', async () => {
    const offsets = [
      ...sample(starts[0] as number, starts[1] as number, 211, 5),
      ...sample(starts[1] as number, starts[2] as number, 101),
      ...sample(starts[2] as number, starts[3] as number, 211, 5),
    ];
    const dir = join(root, 'flip');
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir);
    await copyFile(join(base, STATE_FILE), join(dir, STATE_FILE));
    for (const at of offsets) {
      const bytes = Buffer.from(journal);
      bytes[at] = (bytes[at] as number) ^ 0x01;
      await writeFile(join(dir, JOURNAL_FILE), bytes);
      await writeFile(join(dir, REPLICA_FILE), replicaBefore);
      const code = await codeOfAsync(ReplicaStore.open({ dir, pageSize: ps, fsync: false }));
      if (code !== 'RWAN_ERR_STORE') expect({ at, code }).toEqual({ at, code: 'RWAN_ERR_STORE' });
    }
    expect(offsets.length).toBeGreaterThan(250);
  });
});

describe('ReplicaStore payload records', () => {
  const ps = 512;
  const o: EpochOptions = { full: false, imageBytes: 16 * ps, sessionId: SESSION_A };
  let base = '';
  let journal: Buffer = Buffer.alloc(0);
  const models: Buffer[] = [];
  const starts: number[] = [];

  // a full epoch as pages, then three epochs as payloads (the first of them a full one)
  beforeAll(async () => {
    base = freshDir();
    const r = prng(21);
    const { store } = await ReplicaStore.open(replaying({ dir: base, pageSize: ps, fsync: false }, []));
    let model: Buffer = Buffer.alloc(0);
    const eps = [
      genEpoch(r, 0, { ...o, full: true }, ps, 0),
      genEpoch(r, 1, { ...o, full: true }, ps, 0),
      genEpoch(r, 2, o, ps, 6),
      genEpoch(r, 3, o, ps, 6),
    ];
    for (const ep of eps) {
      starts.push((await stat(join(base, JOURNAL_FILE))).size);
      await commitEpoch(store, ep, ep.epoch > 0);
      model = applyModel(model, ep, ps);
      models.push(Buffer.from(model));
    }
    journal = await readFile(join(base, JOURNAL_FILE));
    await store.close();
  });

  /** A store directory with `bytes` as its journal and an empty replica (recovery rebuilds it all). */
  async function setUp(bytes: Buffer): Promise<string> {
    const dir = join(root, 'payload');
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir);
    await copyFile(join(base, STATE_FILE), join(dir, STATE_FILE));
    await writeFile(join(dir, REPLICA_FILE), '');
    await writeFile(join(dir, JOURNAL_FILE), bytes);
    return dir;
  }

  it('replays through the replayer: full payloads empty the replica first; a record is header, payload, trailer', async () => {
    const last = starts[3] as number;
    const e3 = journal.subarray(last);
    expect(e3.readUInt16LE(6)).toBe(2); // flags: payload
    expect(e3.subarray(64, 68).toString('latin1')).toBe('RWJP');
    const length = Number(e3.readBigUInt64LE(72));
    expect(e3.length).toBe(64 + 16 + Math.ceil(length / 8) * 8 + 64);
    const dir = await setUp(journal);
    const log: Replayed[] = [];
    const { store, recovery } = await ReplicaStore.open(replaying({ dir, pageSize: ps }, log));
    expect(recovery.replayedEpochs).toEqual([0, 1, 2, 3]);
    expect(log.map((e) => [e.epoch, e.full, e.via])).toEqual([
      [0, true, 'pages'],
      [1, true, 'payload'],
      [2, false, 'payload'],
      [3, false, 'payload'],
    ]);
    await expectReplica(store, models[3] as Buffer, ps);
    await store.close();
  });

  it('borrowed pages (no copy) commit as payload or page records, spilled or not', async () => {
    const dir = freshDir();
    const log: Replayed[] = [];
    const opts = replaying({ dir, pageSize: ps, stagingBytes: 2 * ps }, log);
    const { store } = await ReplicaStore.open(opts);
    const r = prng(22);
    let model: Buffer = Buffer.alloc(0);
    const eps = [
      genEpoch(r, 0, { ...o, full: true }, ps, 0),
      genEpoch(r, 1, o, ps, 12),
      genEpoch(r, 2, o, ps, 12),
    ];
    for (const ep of eps) {
      const w = store.beginEpoch(ep.epoch, {
        full: ep.full,
        imageBytes: ep.imageBytes,
        sessionId: ep.sessionId,
        borrow: true,
      });
      const lent = ep.pages.map(([pfn, page]): [number, Buffer | null] => [pfn, page && Buffer.from(page)]);
      for (const [pfn, page] of lent) w.addPage(pfn, page);
      if (ep.epoch !== 2) w.setPayload(payloadOf(ep));
      await w.commit();
      for (const [, page] of lent) page?.fill(0x77); // the lender may reuse its pages now
      model = applyModel(model, ep, ps);
      await expectReplica(store, model, ps);
    }
    await store.close();
    const reopened = await ReplicaStore.open(opts);
    expect(log.map((e) => e.via)).toEqual(['payload', 'payload', 'pages']);
    expect(log).toEqual([
      replayedOf(eps[0] as Planned, 'payload'),
      replayedOf(eps[1] as Planned, 'payload'),
      replayedOf(eps[2] as Planned),
    ]);
    await expectReplica(reopened.store, model, ps);
    await reopened.store.close();
  });

  it('without a replayer, or when the payload does not replay, the store does not open', async () => {
    const dir = await setUp(journal);
    const err = await ReplicaStore.open({ dir, pageSize: ps }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'RWAN_ERR_STORE', message: expect.stringMatching(/no replayer/) });
    const refusing = (decode: Replayer['decode']): StoreOptions => ({
      dir,
      pageSize: ps,
      replayer: () => ({ begin: () => {}, page: () => {}, decode }),
    });
    const codecError = () => {
      throw new RwanError('RWAN_ERR_CODEC_DIGEST', 'digest mismatch');
    };
    expect(await codeOfAsync(ReplicaStore.open(refusing(codecError)))).toBe('RWAN_ERR_STORE');
    const outside: Replayer['decode'] = (_, out) => out(16, null);
    expect(await codeOfAsync(ReplicaStore.open(refusing(outside)))).toBe('RWAN_ERR_STORE');
    const short: Replayer['decode'] = (_, out) => out(1, new Uint8Array(100));
    expect(await codeOfAsync(ReplicaStore.open(refusing(short)))).toBe('RWAN_ERR_STORE');
  });

  it('cut anywhere in the last payload record: a torn tail; a flipped byte before it: damage', async () => {
    const last = starts[3] as number;
    const dir = await setUp(journal);
    // every byte of the header, payload head and trailer; every 7th byte of the payload
    for (let cut = last; cut < journal.length; cut += cut < last + 80 || cut >= journal.length - 72 ? 1 : 7) {
      await writeFile(join(dir, JOURNAL_FILE), journal.subarray(0, cut));
      await writeFile(join(dir, REPLICA_FILE), '');
      const { store, recovery } = await ReplicaStore.open(replaying({ dir, pageSize: ps, fsync: false }, []));
      expect(recovery).toMatchObject({ replayedEpochs: [0, 1, 2], truncatedBytes: cut - last });
      expect(firstDiff(await readFile(store.replicaPath), models[2] as Buffer)).toBe(-1);
      await store.close();
    }
    const prev = starts[2] as number;
    for (let at = prev; at < last; at += at < prev + 80 || at >= last - 72 ? 1 : 13) {
      const bytes = Buffer.from(journal);
      bytes[at] = (bytes[at] as number) ^ 0x01;
      await writeFile(join(dir, JOURNAL_FILE), bytes);
      await writeFile(join(dir, REPLICA_FILE), '');
      const code = await codeOfAsync(ReplicaStore.open(replaying({ dir, pageSize: ps, fsync: false }, [])));
      if (code !== 'RWAN_ERR_STORE') expect({ at, code }).toEqual({ at, code: 'RWAN_ERR_STORE' });
    }
  });
});

describe('ReplicaStore write-back (retain)', () => {
  const ps = 512;
  const o: EpochOptions = { full: false, imageBytes: 16 * ps, sessionId: SESSION_A };

  /**
   * Commits `ep` the way the receiver does: its pages are the caller's copies (a page cache: `held`),
   * changed in place, lent (borrow) and retained; journaled as the payload.
   */
  async function commitRetained(store: ReplicaStore, ep: Planned, held: Map<number, Buffer>): Promise<void> {
    const w = store.beginEpoch(ep.epoch, {
      ...o,
      full: ep.full,
      borrow: true,
      retain: (pfn) => held.get(pfn),
    });
    changeHeld(ep, held, (pfn, page) => w.addPage(pfn, page));
    w.setPayload(payloadOf(ep));
    await w.commit();
  }

  /** Apply `ep` to the caller's copies in place (a zero page is dropped), calling `each` per page. */
  function changeHeld(
    ep: Planned,
    held: Map<number, Buffer>,
    each = (_pfn: number, _page: Buffer | null) => {},
  ) {
    if (ep.full) held.clear();
    for (const [pfn, page] of ep.pages) {
      if (page === null) held.delete(pfn);
      else {
        const copy = held.get(pfn) ?? Buffer.alloc(ps);
        copy.set(page);
        held.set(pfn, copy);
      }
      each(pfn, page === null ? null : (held.get(pfn) as Buffer));
    }
  }

  const digestOf = (model: Buffer) => new ImageDigest().update(model).hex();

  /**
   * Seeded epochs committed with write-back into `store()`: `step()` commits the next one, `held`
   * is the caller's page copies (what `retain` returns), `model` the image as of the last one.
   */
  function writeBackRun(store: () => ReplicaStore, seed: number) {
    const r = prng(seed);
    const run = {
      r,
      held: new Map<number, Buffer>(),
      model: Buffer.alloc(0) as Buffer,
      epoch: 0,
      step: async (full = false) => {
        const ep = genEpoch(r, run.epoch++, { ...o, full }, ps, 6);
        await commitRetained(store(), ep, run.held);
        run.model = applyModel(run.model, ep, ps);
      },
    };
    return run;
  }

  it('a checkpoint may leave the retained pages in its sidecar: recovery writes them back from it first', async () => {
    const dir = freshDir();
    const withBase = { dir, pageSize: ps, fsync: false, replayer: child.replayer(ps) };
    let { store } = await ReplicaStore.open(withBase);
    const run = writeBackRun(() => store, 37);
    const { held, step } = run;
    await step(true);
    for (let i = 0; i < 5; i++) await step();
    const retained = store.retainedPages;
    expect(retained).toBeGreaterThan(0);
    expect(
      await codeOfAsync(store.checkpoint(null, { retainedInSidecar: true })), // the pages must go somewhere
    ).toBe('RWAN_ERR_INVALID_VALUE');
    await store.checkpoint(child.sidecarOf(run.epoch - 1, held), { retainedInSidecar: true });
    expect(store.retainedPages).toBe(retained); // not written: still retained
    expect(firstDiff(await readFile(store.replicaPath), run.model)).not.toBe(-1);
    await step(); // and one epoch after it, in the journal
    await store.close();

    ({ store } = await ReplicaStore.open(withBase));
    await expectReplica(store, run.model, ps);
    await store.close();
    // without the sidecar's pages (a replayer with no base) the replica cannot be rebuilt: refused
    expect(await codeOfAsync(ReplicaStore.open(replaying({ dir, pageSize: ps }, [])))).toBe('RWAN_ERR_STORE');
    const outside = (sidecar: Buffer | null, at: number | null) => ({
      ...child.replayer(ps)(sidecar, at),
      base: () => [{ pfn: o.imageBytes / ps, page: Buffer.alloc(ps) }],
    });
    expect(await codeOfAsync(ReplicaStore.open({ dir, pageSize: ps, replayer: outside }))).toBe(
      'RWAN_ERR_STORE',
    );
    // a crash while writing them back is recovered by the next open
    expect(
      await codeOfAsync(
        ReplicaStore.open({
          ...withBase,
          faults: (p) => {
            if (p === 'recovery:mid-apply') throw new Error('crash while writing the sidecar pages back');
          },
        }),
      ),
    ).toBe('RWAN_ERR_IO');
    ({ store } = await ReplicaStore.open(withBase));
    await expectReplica(store, run.model, ps);
    // a checkpoint without the option writes them, and the sidecar's pages are no longer needed
    await store.checkpoint(Buffer.from('plain'));
    await store.close();
    ({ store } = await ReplicaStore.open(replaying({ dir, pageSize: ps }, [])));
    await expectReplica(store, run.model, ps);
    await store.close();
  });

  it('retained pages reach the replica file at a write-back, a flush or a checkpoint; readPage, digest and recovery see them all along', async () => {
    const dir = freshDir();
    const opts = replaying({ dir, pageSize: ps, fsync: false }, []);
    let { store } = await ReplicaStore.open(opts);
    const run = writeBackRun(() => store, 31);
    const { held, r } = run;
    const step = async (full = false) => {
      await run.step(full);
      const model = run.model;
      // what the replica holds as of the epoch, whatever the file lags behind
      expect(await store.digest()).toBe(digestOf(model));
      const page = Buffer.alloc(ps);
      for (let pfn = 0; pfn < 16; pfn++) {
        await store.readPage(pfn, page);
        expect(page.equals(model.subarray(pfn * ps, (pfn + 1) * ps))).toBe(true);
      }
    };
    await step(true);
    expect(store.retainedPages).toBe(0); // a full epoch is written through
    for (let i = 0; i < 5; i++) await step();
    expect(store.retainedPages).toBeGreaterThan(0);
    expect(firstDiff(await readFile(store.replicaPath), run.model)).not.toBe(-1);

    // a write-back puts one page in the file
    const [pfn] = [...held.keys()].filter((p) => {
      const onDisk = readFileSync(store.replicaPath).subarray(p * ps, (p + 1) * ps);
      return !onDisk.equals(run.model.subarray(p * ps, (p + 1) * ps));
    });
    const before = store.retainedPages;
    store.writeBack(pfn as number, held.get(pfn as number) as Buffer);
    expect(store.retainedPages).toBe(before - 1);
    expect(
      readFileSync(store.replicaPath)
        .subarray((pfn as number) * ps, (pfn as number) * ps + ps)
        .equals(run.model.subarray((pfn as number) * ps, (pfn as number) * ps + ps)),
    ).toBe(true);

    // closed without a flush (as by a crash): recovery replays the journal into the file
    await store.close();
    ({ store } = await ReplicaStore.open(opts));
    expect(store.retainedPages).toBe(0);
    await expectReplica(store, run.model, ps);

    // a checkpoint writes the retained pages first; so does flushRetained
    for (let i = 0; i < 3; i++) await step();
    expect(store.retainedPages).toBeGreaterThan(0);
    await store.checkpoint(null);
    expect(store.retainedPages).toBe(0);
    await expectReplica(store, run.model, ps);
    for (let i = 0; i < 3; i++) await step();
    store.flushRetained();
    expect(store.retainedPages).toBe(0);
    await expectReplica(store, run.model, ps);

    // a full epoch forgets what was retained (the caller's copies are gone: nothing asks for them)
    for (let i = 0; i < 2; i++) await step();
    await step(true);
    await store.checkpoint(null);
    await expectReplica(store, run.model, ps);

    // an epoch aborted after the caller changed retained pages in place: reopening restores them
    for (let i = 0; i < 2; i++) await step();
    const ep = genEpoch(r, run.epoch, { ...o }, ps, 16, 1000);
    const w = store.beginEpoch(ep.epoch, { ...o, borrow: true, retain: (p) => held.get(p) });
    changeHeld(ep, held);
    await w.abort();
    await store.close();
    held.clear();
    ({ store } = await ReplicaStore.open(opts));
    await expectReplica(store, run.model, ps);
    await store.close();
  });
});

describe('ReplicaStore crash points', () => {
  const ps = 512;
  const o: EpochOptions = { full: false, imageBytes: 24 * ps, sessionId: SESSION_A };

  /** Options that replay the tests' payloads. */
  const opened = (dir: string, more: Partial<StoreOptions> = {}) =>
    ReplicaStore.open(replaying({ dir, pageSize: ps, ...more }, []));

  /**
   * A store with epochs 0 and 1, a checkpoint ("cp1"), epoch 2; then epoch 3 (which spills, or with
   * `payload` is journaled as its payload, like epoch 2) or a second checkpoint ("cp2") fails at
   * `point`. Returns the models at epochs 2 and 3.
   */
  async function crashAt(point: FaultPoint, dir: string, payload = false) {
    const r = prng(11);
    let armed = false;
    const faults = (p: FaultPoint) => {
      if (armed && p === point) throw new Error(`crash at ${p}`);
    };
    const { store } = await opened(dir, { stagingBytes: (payload ? 16 : 4) * ps, faults });
    const models: Buffer[] = [];
    let model: Buffer = Buffer.alloc(0);
    for (const ep of [genEpoch(r, 0, { ...o, full: true }, ps, 0), genEpoch(r, 1, o, ps, 6)]) {
      await commitEpoch(store, ep);
      model = applyModel(model, ep, ps);
      models.push(Buffer.from(model));
    }
    await store.checkpoint(Buffer.from('cp1'));
    const e2 = genEpoch(r, 2, o, ps, 6);
    await commitEpoch(store, e2, payload);
    model = applyModel(model, e2, ps);
    models.push(Buffer.from(model));
    const e3 = genEpoch(r, 3, o, ps, 24, 4);
    e3.pages = e3.pages.slice(0, 12);
    expect(e3.pages.filter(([, p]) => p !== null).length).toBeGreaterThan(4);
    models.push(applyModel(Buffer.from(model), e3, ps));
    armed = true;
    let failure: string | undefined;
    if (point.startsWith('checkpoint:')) {
      failure = await codeOfAsync(store.checkpoint(Buffer.from('cp2')));
    } else {
      const w = store.beginEpoch(3, o);
      failure = codeOf(() => {
        for (const [pfn, page] of e3.pages) w.addPage(pfn, page);
        if (payload) w.setPayload(payloadOf(e3));
      });
      if (failure === undefined) failure = await codeOfAsync(w.commit());
    }
    expect(failure).toBe('RWAN_ERR_IO');
    // the store refuses work until reopened
    expect(codeOf(() => store.beginEpoch(4, o))).toBe('RWAN_ERR_STORE');
    await store.close();
    return models;
  }

  const expected: Record<Exclude<FaultPoint, 'recovery:mid-apply'>, [number, string, boolean]> = {
    // point: [epoch recovered, sidecar, torn bytes cut]
    'spill:before-write': [2, 'cp1', false],
    'spill:after-write': [2, 'cp1', true],
    'commit:before-write': [2, 'cp1', true],
    'commit:after-write': [3, 'cp1', false],
    'commit:after-fsync': [3, 'cp1', false],
    'commit:mid-apply': [3, 'cp1', false],
    'commit:after-apply': [3, 'cp1', false],
    'checkpoint:before-sidecar-write': [2, 'cp1', false],
    'checkpoint:after-sidecar-write': [2, 'cp1', false],
    'checkpoint:after-rotate': [2, 'cp1', false],
    'checkpoint:after-replica-fsync': [2, 'cp1', false],
    'checkpoint:after-rename': [2, 'cp2', false],
    'checkpoint:after-dir-fsync': [2, 'cp2', false],
    'checkpoint:after-retire': [2, 'cp2', false],
  };

  it('names every fault point', () => {
    expect([...Object.keys(expected), 'recovery:mid-apply'].sort()).toEqual([...FAULT_POINTS].sort());
  });

  const cases = Object.entries(expected).flatMap(([point, want]) => [
    { point, want, payload: false },
    // a payload record is written whole at commit: nothing to spill, nothing torn before the write
    ...(point.startsWith('spill:')
      ? []
      : [{ point, want: point === 'commit:before-write' ? [2, 'cp1', false] : want, payload: true }]),
  ]);
  for (const { point, want, payload } of cases) {
    const [epoch, sidecar, torn] = want as [number, string, boolean];
    const as = payload ? 'payload' : 'pages';
    it(`a failure at ${point} recovers epoch ${epoch} exactly (epochs journaled as ${as})`, async () => {
      const dir = freshDir();
      const models = await crashAt(point as FaultPoint, dir, payload);
      const { store, recovery } = await opened(dir);
      expect(store.state.committedEpoch).toBe(epoch);
      expect(recovery.sidecar?.toString()).toBe(sidecar);
      expect(recovery.sidecarEpoch).toBe(sidecar === 'cp1' ? 1 : 2);
      expect(recovery.replayedEpochs).toEqual(sidecar === 'cp2' ? [] : epoch === 3 ? [2, 3] : [2]);
      expect(recovery.truncatedBytes > 0).toBe(torn);
      const model = models[epoch] as Buffer;
      await expectReplica(store, model, ps);
      // the store goes on from there
      const next = { epoch: epoch + 1, ...o, pages: [[5, Buffer.alloc(ps, 0x5a)]] } as Planned;
      await commitEpoch(store, next, payload);
      await store.close();
      const again = await opened(dir);
      expect(again.store.state.committedEpoch).toBe(epoch + 1);
      await expectReplica(again.store, applyModel(Buffer.from(model), next, ps), ps);
      await again.store.close();
    });
  }

  for (const payload of [false, true]) {
    it(`a failure while recovery replays is recovered by the next open (${payload ? 'payload' : 'pages'})`, async () => {
      const dir = freshDir();
      const r = prng(12);
      const { store } = await opened(dir);
      let model: Buffer = Buffer.alloc(0);
      for (const ep of [genEpoch(r, 0, { ...o, full: true }, ps, 0), genEpoch(r, 1, o, ps, 10)]) {
        await commitEpoch(store, ep, payload);
        model = applyModel(model, ep, ps);
      }
      await store.close();
      const faults = (p: FaultPoint) => {
        if (p === 'recovery:mid-apply') throw new Error('crash while replaying');
      };
      expect(await codeOfAsync(opened(dir, { faults }))).toBe('RWAN_ERR_IO');
      const reopened = await opened(dir);
      expect(reopened.recovery.replayedEpochs).toEqual([0, 1]);
      await expectReplica(reopened.store, model, ps);
      await reopened.store.close();
    });
  }

  /** A store at epoch 2 with checkpoint "cp1" after epoch 1 (epoch 2 journaled as its payload). */
  async function atEpoch2(dir: string, faults?: (p: FaultPoint) => void) {
    const r = prng(13);
    const { store } = await opened(dir, faults === undefined ? {} : { faults });
    let model: Buffer = Buffer.alloc(0);
    for (const ep of [genEpoch(r, 0, { ...o, full: true }, ps, 0), genEpoch(r, 1, o, ps, 6)]) {
      await commitEpoch(store, ep);
      model = applyModel(model, ep, ps);
    }
    await store.checkpoint(Buffer.from('cp1'));
    const e2 = genEpoch(r, 2, o, ps, 6);
    await commitEpoch(store, e2, true);
    model = applyModel(model, e2, ps);
    return { store, model, r };
  }

  it('epochs committed while a checkpoint finishes in the background go to the fresh journal', async () => {
    const dir = freshDir();
    const { store, r } = await atEpoch2(dir);
    const sidecar = Buffer.from('cp2');
    await store.beginCheckpoint(sidecar);
    sidecar.fill(0x2d); // written already: the caller may change it now
    expect(store.checkpointDue).toBe(false);
    let model: Buffer = await readFile(store.replicaPath); // epoch 2, none retained
    const next = [3, 4, 5].map((k) => genEpoch(r, k, o, ps, 6));
    for (const ep of next) {
      await commitEpoch(store, ep, ep.epoch !== 4);
      model = applyModel(model, ep, ps);
    }
    await store.checkpoint(null); // waits for the first one, then runs whole
    expect(store.state.appliedEpoch).toBe(5);
    await store.close();
    const { store: again, recovery } = await opened(dir);
    expect(recovery.sidecar).toBeNull();
    expect(recovery.replayedEpochs).toEqual([]);
    await expectReplica(again, model, ps);
    await again.close();
    expect((await readdir(dir)).sort()).toEqual(
      [JOURNAL_FILE, REPLICA_FILE, STATE_FILE, sidecarFile(0), sidecarFile(1)].sort(),
    );
  });

  it('closing during the background half of a checkpoint completes it; epochs after it are replayed', async () => {
    const dir = freshDir();
    const { store, r } = await atEpoch2(dir);
    await store.beginCheckpoint(Buffer.from('cp2'));
    let model: Buffer = await readFile(store.replicaPath);
    const e3 = genEpoch(r, 3, o, ps, 6);
    await commitEpoch(store, e3, true);
    model = applyModel(model, e3, ps);
    await store.close();
    const { store: again, recovery } = await opened(dir);
    expect(recovery.sidecar?.toString()).toBe('cp2');
    expect(recovery.sidecarEpoch).toBe(2);
    expect(recovery.replayedEpochs).toEqual([3]);
    await expectReplica(again, model, ps);
    await again.close();
  });

  const background = [
    'checkpoint:after-replica-fsync',
    'checkpoint:after-rename',
    'checkpoint:after-dir-fsync',
    'checkpoint:after-retire',
  ] as const;
  for (const point of background) {
    it(`a failure at ${point} while epochs are committed keeps every committed epoch`, async () => {
      const dir = freshDir();
      let armed = false;
      const faults = (p: FaultPoint) => {
        if (armed && p === point) throw new Error(`crash at ${p}`);
      };
      const { store, model: at2, r } = await atEpoch2(dir, faults);
      const models = new Map([[2, Buffer.from(at2)]]);
      armed = true;
      await store.beginCheckpoint(Buffer.from('cp2'));
      let model: Buffer = Buffer.from(at2);
      let resolved = 2;
      for (let k = 3; k < 9; k++) {
        const ep = genEpoch(r, k, o, ps, 6);
        model = applyModel(model, ep, ps);
        models.set(k, Buffer.from(model));
        try {
          await commitEpoch(store, ep, k % 2 === 1);
          resolved = k;
        } catch (err) {
          expect((err as RwanError).code).toBe('RWAN_ERR_STORE'); // the background half failed
          break;
        }
      }
      await store.close();
      const { store: again, recovery } = await opened(dir);
      const at = again.state.committedEpoch as number;
      expect(at).toBe(resolved);
      const installed = point !== 'checkpoint:after-replica-fsync';
      expect(recovery.sidecar?.toString()).toBe(installed ? 'cp2' : 'cp1');
      const from = installed ? 3 : 2;
      expect(recovery.replayedEpochs).toEqual(Array.from({ length: at - from + 1 }, (_, i) => from + i));
      await expectReplica(again, models.get(at) as Buffer, ps);
      await again.close();
    });
  }

  it('a retired journal found at open is replayed, kept, and removed by the next checkpoint', async () => {
    for (const point of [
      null,
      'checkpoint:before-sidecar-write',
      'checkpoint:after-sidecar-write',
      'checkpoint:after-replica-fsync',
      'checkpoint:after-rename',
      'checkpoint:after-dir-fsync',
      'checkpoint:after-retire',
    ] as const) {
      const dir = freshDir();
      let rotateFails = false;
      const {
        store,
        model: at2,
        r,
      } = await atEpoch2(dir, (p) => {
        if (rotateFails && p === 'checkpoint:after-rotate') throw new Error('crash after the rotation');
      });
      rotateFails = true;
      expect(await codeOfAsync(store.beginCheckpoint(Buffer.from('cp2')))).toBe('RWAN_ERR_IO');
      await store.close();
      expect((await readdir(dir)).sort()).toContain(JOURNAL_PREV_FILE);

      let armed = false;
      const { store: s2, recovery } = await opened(dir, {
        faults: (p) => {
          if (armed && p === point) throw new Error(`crash at ${p}`);
        },
      });
      expect(recovery.sidecar?.toString()).toBe('cp1');
      expect(recovery.replayedEpochs).toEqual([2]); // from the retired journal
      expect(s2.checkpointDue).toBe(true);
      const e3 = genEpoch(r, 3, o, ps, 6);
      await commitEpoch(s2, e3, true); // into the fresh journal
      const model = applyModel(Buffer.from(at2), e3, ps);
      armed = true;
      const outcome = await codeOfAsync(s2.checkpoint(Buffer.from('cp3')));
      expect(outcome).toBe(point === null ? undefined : 'RWAN_ERR_IO');
      await s2.close();

      const { store: s3, recovery: r3 } = await opened(dir);
      const installed = point === null || /after-(rename|dir-fsync|retire)/.test(point);
      expect([point, r3.sidecar?.toString(), r3.replayedEpochs]).toEqual([
        point,
        installed ? 'cp3' : 'cp1',
        installed ? [] : [2, 3],
      ]);
      expect(s3.checkpointDue).toBe(!installed);
      await expectReplica(s3, model, ps);
      await s3.close();
      if (point === null) expect(await readdir(dir)).not.toContain(JOURNAL_PREV_FILE);
    }
  });
});

describe('ReplicaStore kill -9', () => {
  it('a child killed at random moments leaves a store at (or one past) its last printed epoch', async () => {
    // compile the current sources for the child (plain node cannot import .ts)
    const ts = (await import('typescript')).default;
    const mod = join(root, 'child-module');
    // (all of src/: the store's imports change more often than this test)
    const sources = (await readdir(join(ROOT, 'src'), { recursive: true }))
      .filter((f) => f.endsWith('.ts'))
      .map((f) => join('src', f));
    for (const rel of sources) {
      const out = ts.transpileModule(await readFile(join(ROOT, rel), 'utf8'), {
        compilerOptions: {
          module: ts.ModuleKind.ES2022,
          target: ts.ScriptTarget.ES2022,
          verbatimModuleSyntax: true,
        },
      });
      await mkdir(dirname(join(mod, rel)), { recursive: true });
      await writeFile(join(mod, rel.replace(/\.ts$/, '.js')), out.outputText);
    }
    await writeFile(join(mod, 'package.json'), '{"type":"module"}');
    const moduleUrl = pathToFileURL(join(mod, 'src/replication/store.js')).href;
    const childPath = join(HERE, 'store-crash-child.mjs');
    const { plan, PAGE_SIZE, STAGING_BYTES } = child;

    const dir = freshDir();
    const seed = 4242;
    const r = prng(seed);
    let printed = -1;
    for (let round = 0; round < 5; round++) {
      const proc: ChildProcess = spawn(process.execPath, [childPath, moduleUrl, dir, String(seed)], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let err = '';
      proc.stderr?.on('data', (d: Buffer) => {
        err += d.toString();
      });
      const target = 3 + (r() % 10);
      let seen = 0;
      let buffered = '';
      const exited = once(proc, 'exit');
      await new Promise<void>((done) => {
        proc.stdout?.on('data', (d: Buffer) => {
          buffered += d.toString();
          const lines = buffered.split('\n');
          buffered = lines.pop() ?? '';
          for (const line of lines) {
            printed = Number(line);
            if (++seen === target) setTimeout(done, r() % 12);
          }
        });
        proc.on('exit', () => done());
      });
      proc.kill('SIGKILL');
      const [code, signal] = (await exited) as [number | null, string | null];
      if (signal !== 'SIGKILL') expect({ code, err }).toEqual({ code: null, err: '' });
      expect(seen).toBeGreaterThanOrEqual(target);

      const { store, recovery } = await ReplicaStore.open({
        dir,
        pageSize: PAGE_SIZE,
        stagingBytes: STAGING_BYTES,
        replayer: child.replayer(PAGE_SIZE),
      });
      const at = store.state.committedEpoch as number;
      expect(at === printed || at === printed + 1).toBe(true);
      let model: Buffer = Buffer.alloc(0);
      for (let k = 0; k <= at; k++) model = applyModel(model, plan(seed, k), PAGE_SIZE);
      await expectReplica(store, model, PAGE_SIZE);
      if (recovery.sidecarEpoch !== null) {
        expect(recovery.sidecar?.toString('latin1').split('\n')[0]).toBe(`sidecar ${recovery.sidecarEpoch}`);
        expect(recovery.replayedEpochs).toEqual(
          Array.from(
            { length: at - recovery.sidecarEpoch },
            (_, i) => (recovery.sidecarEpoch as number) + 1 + i,
          ),
        );
      }
      await store.close();
    }
    expect(printed).toBeGreaterThan(10);
  });
});

describe('ReplicaStore bad input', () => {
  const ps = 512;
  const o: EpochOptions = { full: false, imageBytes: 8 * ps, sessionId: SESSION_A };

  it('options: page size, staging, and a store created with another page size', async () => {
    const dir = freshDir();
    expect(await codeOfAsync(ReplicaStore.open({ dir, pageSize: 1000 }))).toBe('RWAN_ERR_INVALID_VALUE');
    expect(await codeOfAsync(ReplicaStore.open({ dir, pageSize: 256 }))).toBe('RWAN_ERR_INVALID_VALUE');
    expect(await codeOfAsync(ReplicaStore.open({ dir, pageSize: ps, stagingBytes: 100 }))).toBe(
      'RWAN_ERR_INVALID_VALUE',
    );
    expect(await codeOfAsync(ReplicaStore.open({ dir, pageSize: ps, checkpointBytes: -1 }))).toBe(
      'RWAN_ERR_INVALID_VALUE',
    );
    const { store } = await ReplicaStore.open({ dir, pageSize: ps, fsync: false });
    await store.close();
    const err = await ReplicaStore.open({ dir, pageSize: 4096 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'RWAN_ERR_STORE', details: { expected: 4096, found: ps } });
  });

  it('epochs: order, session, image size, one at a time, pfns and pages', async () => {
    const { store } = await ReplicaStore.open({ dir: freshDir(), pageSize: ps, fsync: false });
    const bad = 'RWAN_ERR_INVALID_VALUE';
    expect(codeOf(() => store.beginEpoch(0, o))).toBe(bad); // an empty store needs a full epoch
    expect(codeOf(() => store.beginEpoch(-1, { ...o, full: true }))).toBe(bad);
    expect(codeOf(() => store.beginEpoch(1.5, { ...o, full: true }))).toBe(bad);
    expect(codeOf(() => store.beginEpoch(0, { ...o, full: true, imageBytes: 1000 }))).toBe(bad);
    expect(codeOf(() => store.beginEpoch(0, { ...o, full: true, sessionId: 'xyz' }))).toBe(bad);
    const w = store.beginEpoch(5, { ...o, full: true });
    expect(codeOf(() => store.beginEpoch(6, o))).toBe(bad); // a second open epoch
    expect(await codeOfAsync(store.checkpoint(null))).toBe(bad); // not while an epoch is open
    expect(codeOf(() => w.addPage(8, null))).toBe(bad); // past the image
    expect(codeOf(() => w.addPage(-1, null))).toBe(bad);
    expect(codeOf(() => w.addPage(0.5, null))).toBe(bad);
    expect(codeOf(() => w.addPage(1, Buffer.alloc(ps - 1)))).toBe(bad);
    w.addPage(1, Buffer.alloc(ps, 1));
    expect(codeOf(() => w.addPage(1, null))).toBe(bad); // twice in one epoch
    await w.commit();
    expect(codeOf(() => w.addPage(2, null))).toBe(bad); // committed
    expect(await codeOfAsync(w.commit())).toBe(bad);
    expect(await codeOfAsync(w.abort())).toBe(bad);
    expect(codeOf(() => store.beginEpoch(5, o))).toBe(bad); // not increasing
    expect(codeOf(() => store.beginEpoch(4, o))).toBe(bad);
    expect(codeOf(() => store.beginEpoch(6, { ...o, imageBytes: 16 * ps }))).toBe(bad); // resize needs full
    expect(codeOf(() => store.beginEpoch(6, { ...o, sessionId: SESSION_B }))).toBe(bad); // new session needs full
    expect(codeOf(() => store.beginEpoch(5, { ...o, full: true }))).toBe(bad); // same session: still increasing
    const page = new Uint8Array(ps);
    expect(await codeOfAsync(store.readPage(-1, page))).toBe(bad);
    expect(await codeOfAsync(store.readPage(0, new Uint8Array(10)))).toBe(bad);
    // a new session's full epoch may restart the numbering
    const w2 = store.beginEpoch(0, { ...o, full: true, sessionId: SESSION_B });
    await w2.commit();
    expect(store.state).toMatchObject({ committedEpoch: 0, sessionId: SESSION_B.toLowerCase() });
    await store.close();
    expect(codeOf(() => store.beginEpoch(1, o))).toBe(bad);
    expect(await codeOfAsync(store.readPage(0, page))).toBe(bad);
  });

  it('damaged store files are RWAN_ERR_STORE', async () => {
    const dir = freshDir();
    const { store } = await ReplicaStore.open({ dir, pageSize: ps, fsync: false });
    const w = store.beginEpoch(0, { ...o, full: true });
    w.addPage(0, Buffer.alloc(ps, 9));
    await w.commit();
    await store.checkpoint(Buffer.from('x'));
    await store.close();
    const statePath = join(dir, STATE_FILE);
    const state = await readFile(statePath);

    const flipped = Buffer.from(state);
    flipped[45] = (flipped[45] as number) ^ 1;
    await writeFile(statePath, flipped);
    expect(await codeOfAsync(ReplicaStore.open({ dir, pageSize: ps }))).toBe('RWAN_ERR_STORE');
    await writeFile(statePath, state.subarray(0, 50));
    expect(await codeOfAsync(ReplicaStore.open({ dir, pageSize: ps }))).toBe('RWAN_ERR_STORE');

    await writeFile(statePath, state);
    await truncate(join(dir, REPLICA_FILE), ps); // shorter than the image
    expect(await codeOfAsync(ReplicaStore.open({ dir, pageSize: ps }))).toBe('RWAN_ERR_STORE');
    await unlink(join(dir, REPLICA_FILE));
    expect(await codeOfAsync(ReplicaStore.open({ dir, pageSize: ps }))).toBe('RWAN_ERR_STORE');

    await unlink(statePath);
    await writeFile(join(dir, JOURNAL_FILE), Buffer.alloc(64, 1));
    expect(await codeOfAsync(ReplicaStore.open({ dir, pageSize: ps }))).toBe('RWAN_ERR_STORE');
  });

  it('the sidecar file: damaged, short or missing is RWAN_ERR_STORE; its parts may be cut anywhere', async () => {
    const dir = freshDir();
    const { store } = await ReplicaStore.open({ dir, pageSize: ps, fsync: false });
    const w = store.beginEpoch(0, { ...o, full: true });
    await w.commit();
    // 3.5 pages of sidecar, in parts whose boundaries fall inside blocks
    const whole = randomPage(prng(5), 4 * ps).subarray(0, 3 * ps + ps / 2);
    const cuts = [0, 3, 3 + ps, 2 * ps + 1, 2 * ps + 2, whole.length];
    await store.checkpoint(cuts.slice(1).map((end, i) => whole.subarray(cuts[i], end)));
    await store.close();
    const reopened = await ReplicaStore.open({ dir, pageSize: ps });
    expect(reopened.recovery.sidecar?.equals(whole)).toBe(true);
    await reopened.store.close();

    const path = join(dir, sidecarFile(0));
    const bytes = await readFile(path);
    for (const at of [0, ps + 7, bytes.length - 1]) {
      const flipped = Buffer.from(bytes);
      flipped[at] = (flipped[at] as number) ^ 0x10;
      await writeFile(path, flipped);
      expect(await codeOfAsync(ReplicaStore.open({ dir, pageSize: ps }))).toBe('RWAN_ERR_STORE');
    }
    await writeFile(path, bytes.subarray(0, bytes.length - 1));
    expect(await codeOfAsync(ReplicaStore.open({ dir, pageSize: ps }))).toBe('RWAN_ERR_STORE');
    await unlink(path);
    expect(await codeOfAsync(ReplicaStore.open({ dir, pageSize: ps }))).toBe('RWAN_ERR_STORE');
    // bytes past the sidecar's length do not count
    await writeFile(path, Buffer.concat([bytes, Buffer.alloc(9, 1)]));
    const again = await ReplicaStore.open({ dir, pageSize: ps });
    expect(again.recovery.sidecar?.equals(whole)).toBe(true);
    // the next checkpoint takes the other slot, and the one after reuses this one, cut to length
    await again.store.checkpoint(Buffer.from('second'));
    await again.store.checkpoint(Buffer.from('third'));
    await again.store.close();
    expect((await readFile(path)).toString()).toBe('third');
    expect((await readFile(join(dir, sidecarFile(1)))).toString()).toBe('second');
  });

  it('prepareSidecars extends both slot files with zeros, never touches an installed sidecar, and a checkpoint waits for it', async () => {
    const dir = freshDir();
    const { store } = await ReplicaStore.open({ dir, pageSize: ps, fsync: true });
    const w = store.beginEpoch(0, { ...o, full: true });
    await w.commit();
    // on a fresh store: both files made, all zeros
    await store.prepareSidecars(3 * ps);
    for (const slot of [0, 1])
      expect(await readFile(join(dir, sidecarFile(slot)))).toEqual(Buffer.alloc(3 * ps));
    const first = randomPage(prng(8), ps + 100);
    await store.checkpoint(first); // slot 0, overwritten and cut to length
    expect(await readFile(join(dir, sidecarFile(0)))).toEqual(first);
    // past the installed sidecar's end only; a checkpoint started meanwhile waits, then takes slot 1
    const preparing = store.prepareSidecars(64 * ps);
    const second = randomPage(prng(9), 2 * ps);
    const checkpoint = store.checkpoint(second);
    await preparing;
    const slot0 = await readFile(join(dir, sidecarFile(0)));
    expect(slot0.length).toBe(64 * ps);
    expect(slot0.subarray(0, first.length)).toEqual(first);
    expect(slot0.subarray(first.length).every((b) => b === 0)).toBe(true);
    await checkpoint;
    expect(await readFile(join(dir, sidecarFile(1)))).toEqual(second);
    await store.close();
    const reopened = await ReplicaStore.open({ dir, pageSize: ps });
    expect(reopened.recovery.sidecar?.equals(second)).toBe(true);
    // a file already long enough is left as it is
    await reopened.store.prepareSidecars(ps);
    expect((await readFile(join(dir, sidecarFile(0)))).length).toBe(64 * ps);
    expect(() => reopened.store.prepareSidecars(-1)).toThrow(/sidecar bytes/);
    await reopened.store.close();
  });

  it('reads a version 1 state file (the sidecar inside it) and writes version 2 from then on', async () => {
    const dir = freshDir();
    const { store } = await ReplicaStore.open({ dir, pageSize: ps, fsync: false });
    const w = store.beginEpoch(3, { ...o, full: true });
    w.addPage(1, Buffer.alloc(ps, 7));
    await w.commit();
    await store.checkpoint(null);
    await store.close();
    // the same state as version 1 with an inline sidecar (docs/replica-store.md §4)
    const v2 = await readFile(join(dir, STATE_FILE));
    const sidecar = Buffer.from('a version 1 sidecar');
    const head = Buffer.from(v2.subarray(0, 72));
    head.writeUInt32LE(1, 8);
    head.writeUInt32LE(head.readUInt32LE(16) | 4, 16);
    head.writeBigUInt64LE(BigInt(sidecar.length), 64);
    const body = Buffer.concat([head, sidecar]);
    await writeFile(join(dir, STATE_FILE), Buffer.concat([body, createHash('sha256').update(body).digest()]));
    const { store: s1, recovery } = await ReplicaStore.open({ dir, pageSize: ps });
    expect(recovery.sidecar?.toString()).toBe('a version 1 sidecar');
    expect(recovery.sidecarEpoch).toBe(3);
    expect(s1.state).toMatchObject({ appliedEpoch: 3, committedEpoch: 3 });
    await s1.checkpoint(Buffer.from('now in a slot'));
    await s1.close();
    expect((await readFile(join(dir, STATE_FILE))).readUInt32LE(8)).toBe(2);
    const { store: s2, recovery: r2 } = await ReplicaStore.open({ dir, pageSize: ps });
    expect(r2.sidecar?.toString()).toBe('now in a slot');
    await s2.close();
  });
});
