/**
 * The baseline of the WAN benchmark (wan-bench.ts): the page stream a stock Remus primary sends, one
 * checkpoint at a time, as a user would carry it today: over plain TCP, through `ssh -C`, or zstd
 * level 1 through socat.
 *
 *   page-stream send --image IMG --dirty-log LOG --pause-pid PID --epoch-ms 100 --stats FILE
 *                    (--connect HOST:PORT | --command "CMD") [--zstd-level N]
 *   page-stream recv --replica FILE [--listen HOST:PORT] [--zstd]
 *
 * What is sent is what xl sends (libxc's send_dirty_pages, docs/xen-stream.md): each checkpoint's dirty pages
 * as libxc PAGE_DATA records of at most 1024 pages (`u32 count, u32 reserved, u64 pfn[count]`, then
 * the pages), then a CHECKPOINT record. The receiver copies each page into its replica, in memory (as
 * xl's receiver fills the guest's memory: no journal, no fsync; the file --replica is written when
 * the stream ends) and at each CHECKPOINT answers the
 * checkpoint's number (u64, little-endian): the acknowledgement at which the primary may release the
 * checkpoint's output. The sender waits for it before the next capture (stop and wait: one
 * checkpoint in flight, as xl's loop has), and captures at most every --epoch-ms. It captures as
 * `remus-wan send` does (src/replication/source-image.ts: the dirty log, the writer stopped during
 * the capture) and, kinder than xl, lets the writer run while the checkpoint is sent (xl keeps the
 * guest suspended while it writes the pages).
 *
 * `--command CMD` runs `sh -c CMD` and speaks through its stdin and stdout (as `xl remus -s` runs
 * `ssh host xl migrate-receive -r`); without `--listen`, the receiver speaks through its own. With
 * `--zstd-level N` the sender compresses the stream (zstd's streaming API, one frame, the level's
 * parameters as the zstd command line uses them) and flushes it at each checkpoint's end; the
 * receiver decompresses it. The `zstd` command itself cannot carry this stream: it holds its output
 * until its input ends (zstd 1.5.4 on Debian 12 gave none of 350 kB written before the end of its
 * input), so the last bytes of a checkpoint would wait behind it for an acknowledgement that cannot
 * come.
 *
 * Stats (--stats, JSONL, one line per checkpoint): { epoch, full, dirtyPages, rawBytes, wireBytes (what
 * left the sender: after zstd when it compresses), epochMs (from the previous capture's start),
 * captureMs, pausedMs, sendMs (capture's end → last byte handed to the transport), ackMs (capture's
 * end → acknowledgement) }: the fields and meanings of `remus-wan send --stats` that apply.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { appendFileSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import { CompressStream, DecompressStream } from 'zstd-napi';
import { ImageSource } from '../../src/replication/source-image.js';
import { LibxcRecord, RECORD_HEADER_BYTES } from '../../src/xen/format.js';
import { parsePageData } from '../../src/xen/page-data.js';

const PAGE = 4096;
/** Pages per PAGE_DATA record: libxc's MAX_BATCH_SIZE. */
const BATCH = 1024;

function fail(message: string): never {
  process.stderr.write(`page-stream: ${message}\n`);
  process.exit(2);
}

function hostPort(v: string, what: string): { host: string; port: number } {
  const m = /^(.+):(\d+)$/.exec(v);
  if (!m) fail(`${what} ${v}: HOST:PORT`);
  return { host: m[1] as string, port: Number(m[2]) };
}

/** A record header: u32 type, u32 body length (little-endian, as libxc writes on x86). */
function recordHeader(type: number, length: number): Buffer {
  const h = Buffer.alloc(RECORD_HEADER_BYTES);
  h.writeUInt32LE(type, 0);
  h.writeUInt32LE(length, 4);
  return h;
}

async function write(w: Writable, b: Buffer): Promise<void> {
  if (!w.write(b)) await once(w, 'drain');
}

/** Reads exact byte counts from a stream. */
class Bytes {
  private chunks: Buffer[] = [];
  private have = 0;
  private ended = false;
  private wake: (() => void) | undefined;
  constructor(input: Readable) {
    input.on('data', (d: Buffer) => {
      this.chunks.push(d);
      this.have += d.length;
      this.wake?.();
    });
    input.on('end', () => {
      this.ended = true;
      this.wake?.();
    });
  }
  /** `n` bytes, or undefined when the stream ends first. */
  async take(n: number): Promise<Buffer | undefined> {
    while (this.have < n) {
      if (this.ended) return undefined;
      await new Promise<void>((r) => {
        this.wake = r;
      });
      this.wake = undefined;
    }
    const all = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks);
    this.chunks = all.length > n ? [all.subarray(n)] : [];
    this.have -= n;
    return all.subarray(0, n);
  }
}

/** The two ends of the transport: a TCP connection or a command's stdin and stdout. */
async function transport(o: { connect?: string; command?: string }): Promise<{
  out: Writable;
  input: Readable;
  child?: ChildProcess;
}> {
  if (o.connect) {
    const { host, port } = hostPort(o.connect, '--connect');
    const s = connect({ host, port, noDelay: true });
    await once(s, 'connect');
    return { out: s, input: s };
  }
  if (!o.command) fail('send needs --connect or --command');
  const child = spawn('sh', ['-c', o.command], { stdio: ['pipe', 'pipe', 'inherit'] });
  child.once('exit', (code, sig) => {
    if (!stopping) fail(`the transport command exited (${code ?? sig})`);
  });
  return { out: child.stdin as Writable, input: child.stdout as Readable, child };
}

let stopping = false;
let capturing = false;

async function send(o: Record<string, string | undefined>): Promise<void> {
  const epochMs = Number(o['epoch-ms'] ?? 100);
  if (!(epochMs > 0)) fail('--epoch-ms: a length in milliseconds');
  if (!o.image || !o['dirty-log'] || !o.stats) fail('send needs --image, --dirty-log and --stats');
  const src = await ImageSource.open({
    path: o.image,
    pageSize: PAGE,
    dirty: { kind: 'log', path: o['dirty-log'] },
    ...(o['pause-pid'] ? { pausePid: Number(o['pause-pid']) } : {}),
  });
  const t = await transport(o);
  let out = t.out;
  let wireBytes = 0;
  let z: CompressStream | undefined;
  if (o['zstd-level'] !== undefined) {
    z = new CompressStream({ compressionLevel: Number(o['zstd-level']) });
    z.on('data', (d: Buffer) => {
      wireBytes += d.length;
    });
    z.pipe(t.out);
    out = z;
  }
  const acks = new Bytes(t.input);
  const stats = o.stats;
  let prevStart = Number.NaN;
  for (let epoch = 0; !stopping; epoch++) {
    const start = performance.now();
    capturing = true;
    const c = await src.capture({ full: epoch === 0 });
    capturing = false;
    if (stopping) break;
    const captured = performance.now();
    const n = c.pfns.length;
    const before = wireBytes;
    for (let i = 0; i < n; i += BATCH) {
      const k = Math.min(BATCH, n - i);
      const head = Buffer.alloc(RECORD_HEADER_BYTES + 8 + 8 * k);
      recordHeader(LibxcRecord.PAGE_DATA, 8 + 8 * k + PAGE * k).copy(head);
      head.writeUInt32LE(k, RECORD_HEADER_BYTES);
      for (let j = 0; j < k; j++) {
        // page type 0 (a normal page) in the top bits, the pfn below
        head.writeBigUInt64LE(BigInt(c.pfns[i + j] as number), RECORD_HEADER_BYTES + 8 + 8 * j);
      }
      await write(out, head);
      await write(out, c.pages.subarray(i * PAGE, (i + k) * PAGE));
    }
    await write(out, recordHeader(LibxcRecord.CHECKPOINT, 0));
    if (z) await new Promise<void>((r, j) => z.flush((e) => (e ? j(e) : r())));
    else wireBytes += n * (PAGE + 8) + 8 * Math.ceil(n / BATCH) * 2 + RECORD_HEADER_BYTES;
    const sent = performance.now();
    const ack = await acks.take(8);
    if (!ack) fail('the transport ended before the acknowledgement');
    if (Number(ack.readBigUInt64LE(0)) !== epoch)
      fail(`acknowledgement ${ack.readBigUInt64LE(0)} for checkpoint ${epoch}`);
    const acked = performance.now();
    src.recycle(c.pages);
    appendFileSync(
      stats,
      `${JSON.stringify({
        epoch,
        full: c.full,
        dirtyPages: n,
        rawBytes: n * PAGE,
        wireBytes: wireBytes - before,
        epochMs: Number.isNaN(prevStart) ? null : +(start - prevStart).toFixed(3),
        captureMs: +c.captureMs.toFixed(3),
        pausedMs: +c.pausedMs.toFixed(3),
        sendMs: +(sent - captured).toFixed(3),
        ackMs: +(acked - captured).toFixed(3),
      })}\n`,
    );
    prevStart = start;
    const next = start + epochMs - performance.now();
    if (next > 0) await new Promise((r) => setTimeout(r, next));
  }
  await src.close();
  t.child?.kill('SIGTERM');
  process.exit(0);
}

async function recv(o: { replica?: string; listen?: string; zstd?: boolean }): Promise<void> {
  if (!o.replica) fail('recv needs --replica');
  let input: Readable = process.stdin;
  let out: Writable = process.stdout;
  if (o.listen) {
    const { host, port } = hostPort(o.listen, '--listen');
    const server = createServer();
    server.listen(port, host);
    await once(server, 'listening');
    process.stdout.write('listening\n');
    const [s] = (await once(server, 'connection')) as [Socket];
    server.close();
    s.setNoDelay(true);
    input = s;
    out = s;
  }
  if (o.zstd) input = input.pipe(new DecompressStream());
  // the replica is memory, as the guest's memory is xl's receiver's: pages are copied in, and the file
  // is written once the stream ends
  let replica = Buffer.alloc(0);
  const bytes = new Bytes(input);
  for (let checkpoint = 0; ; ) {
    const h = await bytes.take(RECORD_HEADER_BYTES);
    if (!h) break;
    const type = h.readUInt32LE(0);
    const length = h.readUInt32LE(4);
    const body = length === 0 ? Buffer.alloc(0) : await bytes.take(length + ((8 - (length % 8)) % 8));
    if (!body) fail('the stream ended inside a record');
    if (type === LibxcRecord.PAGE_DATA) {
      const batch = parsePageData(body.subarray(0, length), 'le', PAGE);
      const top = (Math.max(...batch.pfns) + 1) * PAGE;
      if (top > replica.length) {
        const grown = Buffer.alloc(Math.max(top, 2 * replica.length));
        replica.copy(grown);
        replica = grown;
      }
      batch.pfns.forEach((pfn, i) => {
        const at = (batch.slot[i] as number) * PAGE;
        batch.data.copy(replica, pfn * PAGE, at, at + PAGE);
      });
    } else if (type === LibxcRecord.CHECKPOINT) {
      const ack = Buffer.alloc(8);
      ack.writeBigUInt64LE(BigInt(checkpoint++));
      await write(out, ack);
    } else fail(`unexpected record type 0x${type.toString(16)}`);
  }
  writeFileSync(o.replica, replica);
  process.exit(0);
}

const [cmd, ...rest] = process.argv.slice(2);
const text = { type: 'string' } as const;
const parse = (options: NonNullable<Parameters<typeof parseArgs>[0]>['options']) => {
  try {
    return parseArgs({ args: rest, options }).values;
  } catch (err) {
    fail((err as Error).message);
  }
};
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.on(sig, () => {
    stopping = true;
    // never leave the writer stopped: a capture in progress ends first (it resumes the writer)
    if (!capturing) process.exit(0);
  });
}
if (cmd === 'send') {
  await send(
    parse({
      image: text,
      'dirty-log': text,
      'pause-pid': text,
      'epoch-ms': text,
      stats: text,
      connect: text,
      command: text,
      'zstd-level': text,
    }) as Record<string, string | undefined>,
  );
} else if (cmd === 'recv') {
  await recv(parse({ replica: text, listen: text, zstd: { type: 'boolean' } }) as Parameters<typeof recv>[0]);
} else fail('usage: page-stream send|recv … (see the head of tools/bench/page-stream.ts)');
