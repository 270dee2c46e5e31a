/**
 * Sender and receiver sessions in one process over loopback TCP (plaintext: the secured transport has
 * its own tests), with an in-memory source and a real replica store on disk: every acknowledged epoch
 * is byte-identical at the backup, a cut connection resumes without a full copy, a restarted receiver
 * resumes from its store, and silence turns into exactly one "primary lost".
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { type EncoderPort, InlineEncoder } from '../../src/replication/encoder-port.js';
import { digestFile, ImageDigest } from '../../src/replication/image-digest.js';
import { type ReceiverEpochStats, ReceiverSession } from '../../src/replication/receiver.js';
import {
  CAPTURES_AHEAD,
  type EpochSource,
  type Log,
  type SenderEpochStats,
  SenderSession,
} from '../../src/replication/sender.js';
import { ReplicaStore } from '../../src/replication/store.js';

const PAGE = 4096;
const say = (level: string) => (o: object, m?: string) => {
  if (process.env.SESSION_LOG) process.stderr.write(`${level} ${m} ${JSON.stringify(o)}\n`);
};
const quiet: Log = { info: say('info'), warn: say('warn'), error: say('error'), debug: say('debug') };

/** A guest image in memory: a seeded writer dirties pages between captures. */
class MemorySource implements EpochSource {
  readonly image: Buffer;
  private readonly dirty = new Set<number>();
  private x: number;
  constructor(
    readonly pages: number,
    seed: number,
  ) {
    this.image = Buffer.alloc(pages * PAGE);
    this.x = seed | 1;
    for (let p = 0; p < pages; p++) if (p % 3 !== 0) this.fill(p, 1.0);
  }
  private rnd(): number {
    this.x ^= this.x << 13;
    this.x ^= this.x >>> 17;
    this.x ^= this.x << 5;
    return (this.x >>> 0) / 2 ** 32;
  }
  private fill(p: number, share: number): void {
    const page = this.image.subarray(p * PAGE, (p + 1) * PAGE);
    for (let i = 0; i < PAGE; i += 8)
      if (this.rnd() < share) page.writeUInt32LE((this.rnd() * 2 ** 32) >>> 0, i);
  }
  /** Dirty some pages, mostly a few words, sometimes whole pages or zero pages. */
  write(count: number): void {
    for (let k = 0; k < count; k++) {
      const p = Math.floor(this.rnd() ** 2 * this.pages);
      const r = this.rnd();
      if (r < 0.1) this.image.fill(0, p * PAGE, (p + 1) * PAGE);
      else this.fill(p, r < 0.3 ? 1 : 0.01);
      this.dirty.add(p);
    }
  }
  readonly digests = new Map<number, string>();
  /** Pages to dirty just before each capture after the first (epochs of a set size, whatever the timing). */
  writesPerCapture = 0;
  private captures = 0;
  async capture(o: { full?: boolean } = {}) {
    const full = o.full === true || this.captures === 0;
    if (!full) this.write(this.writesPerCapture);
    this.captures++;
    const list = full
      ? Array.from({ length: this.pages }, (_, i) => i)
      : [...this.dirty].sort((a, b) => a - b);
    this.dirty.clear();
    const pages = Buffer.allocUnsafe(list.length * PAGE);
    list.forEach((p, i) => {
      this.image.copy(pages, i * PAGE, p * PAGE, (p + 1) * PAGE);
    });
    const digest = new ImageDigest().update(this.image).hex();
    return { full, pfns: list, pages, imageBytes: this.image.length, captureMs: 0, pausedMs: 0, digest };
  }
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function startReceiver(
  dir: string,
  port = 0,
  deadTimeMs = 5000,
  checkpointBytes = 256 * 2 ** 10,
  stagingBytes = 1 << 20,
) {
  const receiver = await ReceiverSession.create({
    // checkpoints every few epochs, so restarts replay both the sidecar and journaled epochs
    store: { dir, checkpointBytes },
    pageSize: PAGE,
    cacheBytes: 64 * 2 ** 20,
    heartbeatMs: 50,
    idleTimeoutMs: 2000,
    handshakeTimeoutMs: 2000,
    deadTimeMs,
    stagingBytes,
    verify: true,
    log: quiet,
  });
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    receiver.accept(s, { remoteAddress: s.remoteAddress ?? '', remotePort: s.remotePort ?? 0 });
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  const stop = async () => {
    await receiver.close();
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  };
  return {
    receiver,
    store: receiver.store,
    server,
    sockets,
    port: (server.address() as { port: number }).port,
    stop,
  };
}

function startSender(
  port: number,
  source: EpochSource,
  extra: Partial<ConstructorParameters<typeof SenderSession>[0]> = {},
) {
  const sender = new SenderSession({
    dial: () =>
      new Promise((resolve, reject) => {
        const s = netConnect(port, '127.0.0.1');
        s.once('connect', () =>
          resolve({ socket: s, peer: { remoteAddress: '127.0.0.1', remotePort: port } }),
        );
        s.once('error', reject);
      }),
    source,
    pageSize: PAGE,
    channels: 2,
    window: 4,
    epochMs: 5,
    heartbeatMs: 50,
    idleTimeoutMs: 2000,
    handshakeTimeoutMs: 2000,
    reconnect: { initialMs: 20, maxMs: 200 },
    log: quiet,
    ...extra,
  });
  return sender;
}

/** A store directory, removed after the test. */
function sessionDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'remus-session-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Dirty `pages` pages of `source` every 2 ms until the test ends. */
function keepWriting(source: MemorySource, pages: number): void {
  const writer = setInterval(() => source.write(pages), 2);
  cleanups.push(() => clearInterval(writer));
}

/** The stats of every epoch the sender has acknowledged and the receiver committed, as they come. */
/**
 * One end of an in-memory connection: what it is given reaches the other end's readable side, unless
 * it is held (a stalled flow: the writes stay unfinished, as in a socket whose TCP cannot send).
 */
class MemoryEnd extends Duplex {
  other: MemoryEnd | undefined;
  held: Array<[Buffer, (err?: Error | null) => void]> | undefined;
  /** Start holding at the first write of at least this many bytes (a chunk's data). */
  holdAt: number | undefined;
  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    if (this.holdAt !== undefined && chunk.length >= this.holdAt) this.hold();
    if (this.held) this.held.push([chunk, done]);
    else {
      this.other?.push(chunk);
      done();
    }
  }
  override _read(): void {}
  override _destroy(err: Error | null, done: (err: Error | null) => void): void {
    this.other?.push(null);
    done(err);
  }
  hold(): void {
    this.holdAt = undefined;
    this.held ??= [];
  }
  release(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const [chunk, done] of held) {
      this.other?.push(chunk);
      done();
    }
  }
}

/**
 * A receiver and a sender joined over in-memory streams (the sender's ends in `ends`, to hold one),
 * the source written to all along; resolves once 10 epochs are acknowledged.
 */
async function memorySession(extra: Partial<ConstructorParameters<typeof SenderSession>[0]>) {
  const rx = await startReceiver(sessionDir(), 0, 5000, 2 ** 30);
  cleanups.push(rx.stop);
  const source = new MemorySource(1024, 5);
  keepWriting(source, 20);
  const ends: MemoryEnd[] = [];
  const sender = startSender(0, source, {
    ...extra,
    dial: async () => {
      const [mine, theirs] = memoryPair();
      ends.push(mine);
      rx.receiver.accept(theirs, { remoteAddress: 'memory', remotePort: ends.length });
      return { socket: mine, peer: { remoteAddress: 'memory', remotePort: ends.length } };
    },
  });
  const { sent, got } = record(sender, rx.receiver);
  const done = sender.run();
  cleanups.push(() => sender.stop());
  await until(() => sent.length >= 10);
  return { sender, sent, got, ends, done };
}

function memoryPair(): [MemoryEnd, MemoryEnd] {
  const a = new MemoryEnd();
  const b = new MemoryEnd();
  a.other = b;
  b.other = a;
  return [a, b];
}

function record(sender: SenderSession, receiver: ReceiverSession) {
  const sent: SenderEpochStats[] = [];
  const got: ReceiverEpochStats[] = [];
  sender.on('epoch', (s: SenderEpochStats) => sent.push(s));
  receiver.on('epoch', (s: ReceiverEpochStats) => got.push(s));
  return { sent, got };
}

/** Every committed epoch left the replica equal to the source at that epoch's capture. */
function expectReplicaAtEachEpoch(
  sent: SenderEpochStats[],
  got: ReceiverEpochStats[],
): Map<number, string | undefined> {
  const byEpoch = new Map(sent.map((s) => [s.epoch, s.digest]));
  for (const g of got) expect(g.replicaDigest, `epoch ${g.epoch}`).toBe(byEpoch.get(g.epoch));
  return byEpoch;
}

function until(cond: () => boolean, ms = 20_000): Promise<void> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const check = () => {
      if (cond()) resolve();
      else if (Date.now() - t0 > ms) reject(new Error('timed out'));
      else setTimeout(check, 5);
    };
    check();
  });
}

describe('sender ⇄ receiver over loopback', () => {
  it('every acknowledged epoch is byte-identical at the backup; a cut resumes without a full copy', async () => {
    const dir = sessionDir();
    const rx = await startReceiver(dir, 0, 5000, 2 ** 30); // no checkpoint: pages stay retained
    cleanups.push(rx.stop);
    const source = new MemorySource(2048, 42);
    keepWriting(source, 40);
    const sender = startSender(rx.port, source, { maxEpochs: 120 });
    const { sent, got } = record(sender, rx.receiver);
    const done = sender.run();
    cleanups.push(() => sender.stop());
    // cut every connection twice while epochs flow
    for (const at of [30, 70]) {
      await until(() => got.length >= at);
      for (const s of rx.sockets) s.destroy();
    }
    const dbg = setInterval(() => {
      if (process.env.SESSION_LOG)
        process.stderr.write(
          `state ${sender.state} acked ${sender.lastAckedEpoch} inflight ${sender.inFlight} sent ${sent.length} got ${got.length} rx ${rx.receiver.lastEpoch}\n`,
        );
    }, 1000);
    cleanups.push(() => clearInterval(dbg));
    await done;
    expect(sender.error).toBeUndefined();
    expect(sent.length).toBe(120);
    const fulls = got.filter((g) => g.full).length;
    expect(fulls).toBe(1); // the first epoch only: the cuts resumed
    expect(sender.counters.reconnects).toBeGreaterThanOrEqual(2);
    // the replica's digest after each commit is the source's at that epoch's capture
    const byEpoch = expectReplicaAtEachEpoch(sent, got);
    // and no epoch is missing or applied twice
    expect(got.map((g) => g.epoch)).toEqual(Array.from({ length: got.length }, (_, i) => i + 1));
    // the replica file lags behind (write-back) until drained() writes the retained pages
    expect(rx.store.retainedPages).toBeGreaterThan(0);
    await rx.receiver.drained();
    expect(rx.store.retainedPages).toBe(0);
    expect(await digestFile(rx.store.replicaPath)).toBe(byEpoch.get(rx.receiver.lastEpoch as number));
  }, 60_000);

  it('copies: small epochs go on both channels, each is applied once and byte-identical; a cut resumes', async () => {
    const dir = sessionDir();
    const rx = await startReceiver(dir, 0, 5000, 2 ** 30);
    cleanups.push(rx.stop);
    const source = new MemorySource(2048, 7);
    keepWriting(source, 20);
    const sender = startSender(rx.port, source, { maxEpochs: 80, copiesBelowBytes: 4 * 2 ** 20 });
    const { sent, got } = record(sender, rx.receiver);
    const done = sender.run();
    cleanups.push(() => sender.stop());
    await until(() => got.length >= 40);
    for (const s of rx.sockets) s.destroy();
    await done;
    expect(sender.error).toBeUndefined();
    expect(sent.length).toBe(80);
    expect(got.filter((g) => g.full)).toHaveLength(1);
    expectReplicaAtEachEpoch(sent, got);
    expect(got.map((g) => g.epoch)).toEqual(Array.from({ length: got.length }, (_, i) => i + 1));
    // the copies were sent and dropped: the first copy of each chunk counts, once
    const copied = sent.reduce((n, e) => n + e.copyBytes, 0);
    expect(copied).toBeGreaterThan(0);
    expect(sender.counters.copyBytes).toBeGreaterThanOrEqual(copied);
    expect(rx.receiver.counters.copyBytes).toBeGreaterThan(0);
    expect(rx.receiver.counters.copyBytes).toBeLessThanOrEqual(sender.counters.copyBytes);
    // an epoch's wire bytes at the backup are its own, not its copies'
    const wire = new Map(sent.map((e) => [e.epoch, e.wireBytes]));
    for (const g of got) expect(g.wireBytes, `epoch ${g.epoch}`).toBe(wire.get(g.epoch));
  }, 60_000);

  it('copies: none while the unacknowledged bytes are over the bound, nor with one channel', async () => {
    for (const extra of [{ copiesBelowBytes: 1 }, { copiesBelowBytes: 4 * 2 ** 20, channels: 1 }]) {
      const rx = await startReceiver(sessionDir(), 0, 5000, 2 ** 30);
      const source = new MemorySource(1024, 3);
      const writer = setInterval(() => source.write(10), 2);
      const sender = startSender(rx.port, source, { maxEpochs: 15, ...extra });
      const { sent } = record(sender, rx.receiver);
      await sender.run();
      clearInterval(writer);
      await rx.stop();
      expect(sender.error).toBeUndefined();
      expect(sent).toHaveLength(15);
      expect(sender.counters.copyBytes).toBe(0);
      expect(rx.receiver.counters.copyBytes).toBe(0);
    }
  }, 60_000);

  it('a stalled channel: chunks go on the other, what it holds is hedged there, and acks keep coming', async () => {
    const { sender, sent, got, ends, done } = await memorySession({
      hedgeAfterMs: 10,
      copiesBelowBytes: 0,
      // several chunks an epoch, so that some go on channel 1
      codec: { chunkBytes: 16 * 1024 },
    });
    const acked: number[] = [];
    sender.on('epoch', () => acked.push(performance.now()));
    // channel 1's flow stops for 1 s (under the 2 s idle timeout) from its next chunk: nothing it is
    // given leaves
    const stalled = ends[1] as MemoryEnd;
    stalled.holdAt = 1024;
    await until(() => stalled.held !== undefined);
    const from = performance.now();
    await sleep(1000);
    const during = acked.filter((t) => t > from);
    const hedged = sender.counters.hedgedBytes;
    stalled.release();
    await until(() => sent.length >= during.length + 20);
    await sender.stop();
    await done;
    expect(sender.error).toBeUndefined();
    // acks went on all along, never a gap of the stall's length
    expect(during.length).toBeGreaterThan(20);
    const gaps = [from, ...during].slice(1).map((t, i) => t - ([from, ...during][i] as number));
    expect(Math.max(...gaps)).toBeLessThan(500);
    expect(hedged).toBeGreaterThan(0);
    expect(sender.counters.reconnects).toBe(0);
    expectReplicaAtEachEpoch(sent, got);
    expect(got.map((g) => g.epoch)).toEqual(Array.from({ length: got.length }, (_, i) => i + 1));
  }, 60_000);

  it('sendMs: when an epoch had left the primary; frames held in the socket count, then no more', async () => {
    const { sender, sent, ends, done } = await memorySession({ channels: 1 });
    // the channel's flow stops for 400 ms (under the 2 s idle timeout) from its next chunk
    const end = ends[0] as MemoryEnd;
    end.holdAt = 1024;
    await until(() => end.held !== undefined);
    const before = sent.length;
    await sleep(400);
    end.release();
    await until(() => sent.length >= before + 20);
    await sender.stop();
    await done;
    expect(sender.error).toBeUndefined();
    expect(sender.counters.reconnects).toBe(0);
    for (const s of sent) {
      // it left after it was encoded, and before the backup could acknowledge it
      expect(s.sendMs, `epoch ${s.epoch}`).toBeGreaterThanOrEqual(s.encodeMs);
      expect(s.sendMs, `epoch ${s.epoch}`).toBeLessThanOrEqual(s.ackMs);
    }
    // the epoch whose chunk was held left 400 ms later at least; the ones before went at once
    const held = sent.slice(before);
    expect(Math.max(...held.map((s) => s.sendMs))).toBeGreaterThanOrEqual(400);
    const prompt = sent.slice(1, before).map((s) => s.sendMs - s.encodeMs);
    expect(prompt.sort((a, b) => a - b)[Math.floor(prompt.length / 2)]).toBeLessThan(100);
  }, 60_000);

  it('staging: epochs under its cap never spill however many pass; one over it spills and commits', async () => {
    const dir = sessionDir();
    const cap = 512 * 2 ** 10;
    const rx = await startReceiver(dir, 0, 5000, 256 * 2 ** 10, cap);
    cleanups.push(rx.stop);
    const source = new MemorySource(512, 9);
    // epochs of a set size: on a loaded machine, timed writes make longer epochs larger ones
    source.writesPerCapture = 40;
    const sender = startSender(rx.port, source, { maxEpochs: 400 });
    const { sent, got } = record(sender, rx.receiver);
    cleanups.push(() => sender.stop());
    await sender.run();
    expect(sender.error).toBeUndefined();
    expectReplicaAtEachEpoch(sent, got);
    // the full copy is over the cap: it went through the spill file; the others, even a window (4) of
    // them staged at once, are not
    const [first, ...rest] = got;
    expect(first?.full).toBe(true);
    expect(first?.wireBytes).toBeGreaterThan(cap);
    expect(Math.max(...rest.map((g) => g.wireBytes))).toBeLessThan(cap / 4);
    expect(rx.receiver.counters.spilledBytes).toBeGreaterThan(0);
    expect(rx.receiver.counters.spilledBytes).toBeLessThanOrEqual(first?.wireBytes ?? 0);
    // many caps' worth went through staging after it
    expect(rest.reduce((n, g) => n + g.wireBytes, 0)).toBeGreaterThan(3 * cap);
  }, 60_000);

  it('an epoch that fails its digest after the decoder changed retained pages: the replica is rebuilt from the journal', async () => {
    const dir = sessionDir();
    const rx = await startReceiver(dir, 0, 5000, 2 ** 30); // no checkpoint: pages stay retained
    cleanups.push(rx.stop);
    const BAD = 25;
    // a relay that flips a byte of epoch BAD's END digest, then passes nothing more
    const relay = createServer((down) => {
      const up = netConnect(rx.port, '127.0.0.1');
      up.pipe(down);
      let held = Buffer.alloc(0);
      let dead = false;
      down.on('data', (d: Buffer) => {
        held = Buffer.concat([held, d]);
        while (!dead && held.length >= 12 && held.length >= 12 + held.readUInt32LE(8)) {
          const n = 12 + held.readUInt32LE(8);
          const frame = Buffer.from(held.subarray(0, n));
          held = held.subarray(n);
          if (frame[3] === 4 && Number(frame.readBigUInt64LE(12)) === BAD) {
            frame[12 + 8] = (frame[12 + 8] as number) ^ 0xff;
            dead = true;
          }
          up.write(frame);
        }
      });
      const end = () => {
        up.destroy();
        down.destroy();
      };
      down.on('error', end).on('close', end);
      up.on('error', end).on('close', end);
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => relay.close(() => r())));
    const source = new MemorySource(2048, 5);
    keepWriting(source, 40);
    const sender = startSender((relay.address() as { port: number }).port, source, { window: 1 });
    const sent = new Map<number, string | undefined>();
    sender.on('epoch', (s: SenderEpochStats) => sent.set(s.epoch, s.digest));
    void sender.run();
    cleanups.push(() => sender.stop());
    await until(() => rx.receiver.counters.digestFailures === 1);
    await sender.stop();
    await rx.receiver.drained();
    expect(rx.receiver.lastEpoch).toBe(BAD - 1);
    const store = rx.receiver.store;
    expect(store).not.toBe(rx.store); // reopened after the failed epoch
    expect(rx.receiver.recovery.replayedEpochs).toEqual(Array.from({ length: BAD - 1 }, (_, i) => i + 1));
    expect(store.retainedPages).toBe(0);
    expect(await digestFile(store.replicaPath)).toBe(sent.get(BAD - 1));
  }, 60_000);

  it('holds the raw pages of at most CAPTURES_AHEAD + 1 captures, and gives them back to the source', async () => {
    const dir = sessionDir();
    const rx = await startReceiver(dir);
    cleanups.push(rx.stop);
    // a source whose captures are handed over whole and come back, counted
    class CountingSource extends MemorySource {
      held = 0;
      maxHeld = 0;
      recycled = 0;
      override async capture(o: { full?: boolean } = {}) {
        const c = await super.capture(o);
        this.held++;
        this.maxHeld = Math.max(this.maxHeld, this.held);
        return { ...c, ownsBuffer: true };
      }
      recycle(_pages: Buffer): void {
        this.held--;
        this.recycled++;
      }
    }
    const source = new CountingSource(512, 9);
    keepWriting(source, 40);
    // an encoder slower than the captures: without the bound, the window's four epochs would queue
    const inline = new InlineEncoder({ pageSize: PAGE });
    const slow: EncoderPort = {
      options: inline.options,
      encode: async (epoch, pfns, pages, onChunk) => {
        await sleep(15);
        return inline.encode(epoch, pfns, pages, onChunk);
      },
      reset: () => inline.reset(),
      close: () => inline.close(),
    };
    const sender = startSender(rx.port, source, { maxEpochs: 40, encoder: slow, epochMs: 1 });
    const done = sender.run();
    cleanups.push(() => sender.stop());
    await done;
    expect(sender.error).toBeUndefined();
    expect(sender.counters.epochsAcked).toBe(40);
    expect(source.maxHeld).toBeLessThanOrEqual(CAPTURES_AHEAD + 1);
    expect(source.recycled).toBeGreaterThanOrEqual(39);
  }, 60_000);

  it('a store whose checkpoint cache cannot be restored opens, and a full copy follows', async () => {
    const dir = sessionDir();
    const session = 'ab'.repeat(16);
    const { store } = await ReplicaStore.open({ dir, pageSize: PAGE });
    const w = store.beginEpoch(1, { full: true, imageBytes: 8 * PAGE, sessionId: session });
    for (let pfn = 0; pfn < 8; pfn++) w.addPage(pfn, Buffer.alloc(PAGE, pfn + 1));
    await w.commit();
    await store.checkpoint(Buffer.from('a sidecar of another format'));
    await store.close();
    const rx = await startReceiver(dir);
    cleanups.push(rx.stop);
    expect(rx.receiver.lastEpoch).toBe(1); // the replica is there; the cache is not
    const source = new MemorySource(256, 5);
    const sender = startSender(rx.port, source, { maxEpochs: 5 });
    const got: ReceiverEpochStats[] = [];
    rx.receiver.on('epoch', (e: ReceiverEpochStats) => got.push(e));
    const sent = new Map<number, string | undefined>();
    sender.on('epoch', (e: SenderEpochStats) => sent.set(e.epoch, e.digest));
    await sender.run();
    expect(sender.error).toBeUndefined();
    expect(got[0]?.full).toBe(true);
    for (const g of got) expect(g.replicaDigest, `epoch ${g.epoch}`).toBe(sent.get(g.epoch));
  }, 30_000);

  it('a restarted receiver resumes from its store (no full copy); silence is one "primary lost"', async () => {
    const dir = sessionDir();
    let rx = await startReceiver(dir, 0, 600);
    const port = rx.port;
    const source = new MemorySource(1024, 7);
    keepWriting(source, 20);
    const sender = startSender(port, source, { maxEpochs: 80 });
    const sent = new Map<number, string | undefined>();
    sender.on('epoch', (s: SenderEpochStats) => sent.set(s.epoch, s.digest));
    const done = sender.run();
    cleanups.push(() => sender.stop());
    const got: ReceiverEpochStats[] = [];
    const track = (r: ReceiverSession) => r.on('epoch', (s: ReceiverEpochStats) => got.push(s));
    track(rx.receiver);
    const dbg = setInterval(() => {
      if (process.env.SESSION_LOG)
        process.stderr.write(
          `state ${sender.state} acked ${sender.lastAckedEpoch} inflight ${sender.inFlight} got ${got.length} rx ${rx.receiver.lastEpoch} ch ${rx.receiver.connectedChannels}\n`,
        );
    }, 1000);
    cleanups.push(() => clearInterval(dbg));
    await until(() => got.length >= 30);
    await rx.stop(); // the backup goes away (its store stays)
    rx = await startReceiver(dir, port, 600);
    cleanups.push(rx.stop);
    track(rx.receiver);
    await done;
    expect(sender.error).toBeUndefined();
    expect(got.filter((g) => g.full).length).toBe(1);
    for (const g of got) expect(g.replicaDigest, `epoch ${g.epoch}`).toBe(sent.get(g.epoch));
    // now the primary goes silent: one event after the dead time, not before
    const events: string[] = [];
    rx.receiver.on('detector', (e: string) => events.push(e));
    await sender.stop();
    await new Promise((r) => setTimeout(r, 200));
    expect(events).toEqual([]);
    await until(() => events.length > 0, 5000);
    await new Promise((r) => setTimeout(r, 300));
    expect(events).toEqual(['primary-lost']);
    expect(rx.receiver.lastEpoch).toBe(80);
  }, 60_000);

  it('promote(): the stream ends at the last complete epoch, the replica is that epoch, the sender stops', async () => {
    const dir = sessionDir();
    const rx = await startReceiver(dir, 0, 5000, 2 ** 30);
    cleanups.push(rx.stop);
    const source = new MemorySource(1024, 11);
    // the image's digest at each capture: capture k is epoch k (one session, no full copy after the first)
    const captured: string[] = [];
    const capture = source.capture.bind(source);
    source.capture = async (o) => {
      const c = await capture(o);
      captured.push(c.digest);
      return c;
    };
    keepWriting(source, 30);
    const sender = startSender(rx.port, source);
    const { sent, got } = record(sender, rx.receiver);
    const done = sender.run();
    cleanups.push(() => sender.stop());
    await until(() => got.length >= 20);
    await expect(rx.receiver.promote(0)).rejects.toMatchObject({ code: 'RWAN_ERR_INVALID_VALUE' });
    const p = await rx.receiver.promote(3);
    expect(p).toEqual({ token: 3, epoch: rx.receiver.lastEpoch });
    // the sender learns it and stops (reconnecting cannot help), with the receiver's reason
    await done;
    expect(sender.error).toMatchObject({ code: 'RWAN_ERR_PEER', details: { wireCode: 13 } });
    expect(sender.error?.message).toMatch(/promoted \(fencing token 3\)/);
    // nothing was committed after the promotion, and the replica file is exactly that epoch (whose
    // acknowledgement may not have reached the sender before the channels closed)
    expect(got.at(-1)?.epoch).toBe(p.epoch);
    expect(got.map((g) => g.epoch)).toEqual(Array.from({ length: got.length }, (_, i) => i + 1));
    expect(sent.length).toBeGreaterThanOrEqual(got.length - 4); // at most a window unacknowledged
    for (const g of got) expect(g.replicaDigest, `epoch ${g.epoch}`).toBe(captured[g.epoch - 1]);
    expect(rx.store.retainedPages).toBe(0);
    expect(await digestFile(rx.store.replicaPath)).toBe(captured[(p.epoch as number) - 1]);
    // a new sender session is refused too; a second call keeps the highest token
    const again = startSender(rx.port, new MemorySource(1024, 12));
    await again.run();
    expect(again.error?.message).toMatch(/promoted \(fencing token 3\) at epoch/);
    expect(await rx.receiver.promote(2)).toEqual({ token: 3, epoch: p.epoch });
    expect(await rx.receiver.promote(5)).toEqual({ token: 5, epoch: p.epoch });
    expect(rx.receiver.promoted).toEqual({ token: 5, epoch: p.epoch });
    expect(rx.receiver.lastEpoch).toBe(p.epoch);
  }, 60_000);
});
