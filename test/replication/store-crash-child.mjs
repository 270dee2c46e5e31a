/**
 * Child process of the kill -9 test in store.test.ts. Opens (and so recovers) a replica store, then
 * commits the seeded epochs of `plan` one after another, forever (the odd ones with a payload, see
 * payloadOf; every third one retained, write-back), writing each epoch number to stdout once its
 * commit has resolved, and checkpointing every few epochs. store.test.ts also uses this module's payload encoding. The parent kills it with SIGKILL
 * at a random moment and checks the store it leaves behind.
 *
 *   node store-crash-child.mjs <URL of the store module> <store dir> <seed>
 *
 * The store module is the compiled src/replication/store.ts (the test compiles it into a temporary
 * directory). `plan` is exported so the parent builds its model from exactly the same epochs.
 */
import { pathToFileURL } from 'node:url';

/** Page size of the store. */
export const PAGE_SIZE = 4096;
/** Pages of the image. */
export const IMAGE_PAGES = 64;
/** Staging of the store: 8 pages, so larger epochs spill. */
export const STAGING_BYTES = 8 * PAGE_SIZE;
/** The sender session of every epoch. */
export const SESSION_ID = '0123456789abcdef0123456789abcdef';
/** A checkpoint follows epoch k when k % CHECKPOINT_EVERY === CHECKPOINT_EVERY - 1. */
export const CHECKPOINT_EVERY = 7;

/** mulberry32 → unsigned 32-bit integers (store.test.ts uses it too). */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/**
 * Epoch `k` of the seeded sequence: epoch 0 is full (every page, shuffled, some zero pages), every
 * fifth epoch carries 24 pages (it spills), the others 1 to 10 pages; about one page in six is zero.
 * @returns {{ epoch: number, full: boolean, imageBytes: number, sessionId: string,
 *   pages: Array<[number, Buffer | null]> }}
 */
export function plan(seed, k) {
  const r = prng(seed * 1_000_003 + k);
  const pfns = Array.from({ length: IMAGE_PAGES }, (_, i) => i);
  for (let i = pfns.length - 1; i > 0; i--) {
    const j = r() % (i + 1);
    [pfns[i], pfns[j]] = [pfns[j], pfns[i]];
  }
  const count = k === 0 ? IMAGE_PAGES : k % 5 === 0 ? 24 : 1 + (r() % 10);
  const pages = pfns.slice(0, count).map((pfn) => {
    if (r() % 6 === 0) return [pfn, null];
    const page = Buffer.allocUnsafe(PAGE_SIZE);
    let x = r() | 1;
    for (let o = 0; o < PAGE_SIZE; o += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      page.writeInt32LE(x | 0, o);
    }
    return [pfn, page];
  });
  return { epoch: k, full: k === 0, imageBytes: IMAGE_PAGES * PAGE_SIZE, sessionId: SESSION_ID, pages };
}

/**
 * The tests' payload encoding of an epoch's pages (`[pfn, page | null]`, null a zero page): per page,
 * pfn:u32, then 0, or 1 and the page bytes.
 * @returns {Buffer[]}
 */
export function payloadOf(pages) {
  return pages.flatMap(([pfn, page]) => {
    const head = Buffer.alloc(5);
    head.writeUInt32LE(pfn, 0);
    head[4] = page === null ? 0 : 1;
    return page === null ? [head] : [head, page];
  });
}

/** Hand each page of a {@link payloadOf} payload to `out(pfn, page | null)`. */
export function decodePayload(payload, pageSize, out) {
  for (let at = 0; at < payload.length; ) {
    const pfn = payload.readUInt32LE(at);
    const page = payload[at + 4] === 1 ? payload.subarray(at + 5, at + 5 + pageSize) : null;
    if (page !== null && page.length !== pageSize) throw new RangeError('a truncated test payload');
    at += 5 + (page === null ? 0 : pageSize);
    out(pfn, page);
  }
}

/**
 * The child's checkpoint sidecar: `sidecar <epoch>` and a newline, then every page it holds (the
 * newest bytes of each non-zero page, as the receiver's page cache holds them) as a
 * {@link payloadOf} payload.
 */
export function sidecarOf(epoch, held) {
  return [Buffer.from(`sidecar ${epoch}\n`), ...payloadOf([...held])];
}

/**
 * A store replayer for {@link payloadOf} payloads (no state to carry between epochs); its `base` gives
 * back the pages of a {@link sidecarOf} sidecar.
 */
export const replayer = (pageSize) => (sidecar) => ({
  begin() {},
  page() {},
  decode: (payload, out) => decodePayload(payload, pageSize, out),
  base() {
    const pages = [];
    const at = sidecar === null ? -1 : sidecar.indexOf(10);
    if (at >= 0) decodePayload(sidecar.subarray(at + 1), pageSize, (pfn, page) => pages.push({ pfn, page }));
    return pages;
  },
});

async function main() {
  const [moduleUrl, dir, seedText] = process.argv.slice(2);
  const seed = Number(seedText);
  const { ReplicaStore } = await import(moduleUrl);
  const { store } = await ReplicaStore.open({
    dir,
    pageSize: PAGE_SIZE,
    stagingBytes: STAGING_BYTES,
    replayer: replayer(PAGE_SIZE),
  });
  const last = store.state.committedEpoch;
  // the newest bytes of every page, changed in place, as the receiver's page cache holds them: every
  // third epoch lends them and the store retains them (write-back) instead of writing the replica
  const held = new Map();
  for (let k = last === null ? 0 : last + 1; ; k++) {
    const ep = plan(seed, k);
    const retain = k % 3 === 2 && !ep.full;
    const w = store.beginEpoch(k, {
      full: ep.full,
      imageBytes: ep.imageBytes,
      sessionId: ep.sessionId,
      ...(retain ? { borrow: true, retain: (pfn) => held.get(pfn) } : {}),
    });
    if (ep.full) held.clear();
    for (const [pfn, page] of ep.pages) {
      if (page === null) held.delete(pfn);
      else held.set(pfn, (held.get(pfn) ?? Buffer.alloc(PAGE_SIZE)).fill(page));
      w.addPage(pfn, page === null ? null : held.get(pfn));
    }
    if (k % 2 === 1) w.setPayload(payloadOf(ep.pages));
    await w.commit();
    process.stdout.write(`${k}\n`);
    // as the receiver does: the checkpoint's second half runs while the next epochs commit, and
    // (every other one) the retained pages stay in the sidecar rather than going to the replica
    if (k % CHECKPOINT_EVERY === CHECKPOINT_EVERY - 1 || store.checkpointDue) {
      await store.beginCheckpoint(sidecarOf(k, held), { retainedInSidecar: k % 2 === 0 });
    }
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    process.stderr.write(`${err?.stack ?? err}\n`);
    process.exit(1);
  });
}
