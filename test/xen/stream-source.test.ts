/**
 * The tunnel's source (src/xen/stream-source.ts) on a stream held in memory: segments as epochs, the
 * output-commit gate (reading stops just after each checkpoint's EMULATOR_CONTEXT header until the
 * backup acknowledges what came before), a full epoch refused once the stream has begun; and the
 * addon's pipe helpers the gate needs (F_SETPIPE_SZ, a bounded wait for data).
 */
import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { setPipeSize, waitReadable } from '../../src/codec/hot-loops.js';
import { LibxlRecord } from '../../src/xen/format.js';
import { generateXenStream } from '../../src/xen/generate.js';
import { readXenStream } from '../../src/xen/reader.js';
import { joinSegment } from '../../src/xen/segment.js';
import { type ByteInput, XenStreamSource } from '../../src/xen/stream-source.js';
import { XenStreamWriter } from '../../src/xen/writer.js';

/** The stream's bytes as reads of at most the size asked (and at most `chunk`). */
function memoryInput(bytes: Buffer, chunk = 1 << 20): ByteInput & { at: number } {
  const input = {
    at: 0,
    async read(max: number) {
      if (input.at >= bytes.length) return null;
      const n = Math.min(max, chunk, bytes.length - input.at);
      input.at += n;
      return bytes.subarray(input.at - n, input.at);
    },
  };
  return input;
}

const o = { guest: 'hvm' as const, pages: 600, checkpoints: 3, dirtyPages: 40, seed: 12 };

describe('XenStreamSource', () => {
  it('captures give the stream back, segment by segment', async () => {
    const stream = new XenStreamWriter();
    const all = Buffer.concat([...generateXenStream(o)].map((i) => stream.encode(i)));
    const source = new XenStreamSource(memoryInput(all));
    const out: Buffer[] = [];
    let first = true;
    const drained = source.drained.then(() => 'drained');
    for (;;) {
      const got = await Promise.race([source.capture(), drained]);
      if (got === 'drained') break;
      const c = got as Awaited<ReturnType<XenStreamSource['capture']>>;
      expect(c.full).toBe(first);
      first = false;
      out.push(joinSegment(c.pfns, c.pages).bytes);
      source.acked(source.captured);
    }
    expect(Buffer.concat(out).equals(all)).toBe(true);
    expect(source.counters).toMatchObject({ checkpoints: 4, gated: 0, ungated: 4 });
    await expect(source.capture({ full: true })).rejects.toMatchObject({ code: 'RWAN_ERR_PEER' });
  });

  it('the gate: reading stops at each EMULATOR_CONTEXT header until what came before is acknowledged', async () => {
    const w = new XenStreamWriter();
    const items = [...generateXenStream(o)];
    const heads: number[] = []; // where each checkpoint's EMULATOR_CONTEXT header ends
    const parts = items.map((i) => {
      const b = w.encode(i);
      if (i.kind === 'libxl-record' && i.type === LibxlRecord.EMULATOR_CONTEXT)
        heads.push(w.position - b.length + 8);
      return b;
    });
    const all = Buffer.concat(parts);
    const input = memoryInput(all, 64 * 1024);
    const source = new XenStreamSource(input, { gate: { pipeBytes: 4096 } });
    for (const [k, head] of heads.entries()) {
      // capture what the source offers; it stops reading at this checkpoint's header
      for (;;) {
        await sleep(5);
        if (input.at === head) break;
        const c = await source.capture();
        expect(joinSegment(c.pfns, c.pages).checkpoint).toBe(k);
      }
      // the part before the header is offered; reading stays held until it is acknowledged
      const p = await source.capture();
      const part = joinSegment(p.pfns, p.pages);
      expect(part).toMatchObject({ checkpoint: k, last: false });
      await sleep(30);
      expect(input.at, `checkpoint ${k}`).toBe(head);
      source.acked(source.captured);
      // released: the rest of the checkpoint is read, and ends it
      const c = await source.capture();
      const seg = joinSegment(c.pfns, c.pages);
      expect(seg).toMatchObject({ checkpoint: k, last: true });
      expect(input.at).toBeGreaterThan(head);
      source.acked(source.captured);
    }
    await source.drained;
    expect(source.counters).toMatchObject({ checkpoints: 4, gated: 4, ungated: 0 });
    expect(readXenStream(all).end.checkpoints).toBe(4);
  });
});

describe('the addon’s pipe helpers', () => {
  it.runIf(setPipeSize !== undefined && waitReadable !== undefined)(
    'F_SETPIPE_SZ shrinks a pipe to a page; waitReadable times out on silence and sees data',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'rwan-pipe-'));
      try {
        const fifo = join(dir, 'p');
        execFileSync('mkfifo', [fifo]);
        const r = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
        const wfd = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
        expect(setPipeSize?.(r, 4096)).toBe(4096);
        expect(setPipeSize?.(r, 1)).toBe(4096); // one page at the least
        const t0 = performance.now();
        expect(await waitReadable?.(r, 50)).toBe(0);
        expect(performance.now() - t0).toBeGreaterThanOrEqual(45);
        writeSync(wfd, Buffer.from('x'));
        expect((await waitReadable?.(r, 1000)) ?? 0).toBeGreaterThan(0);
        // a full pipe of one page refuses more
        writeSync(wfd, Buffer.alloc(4095)); // the page is full
        expect(() => writeSync(wfd, Buffer.alloc(10))).toThrow(expect.objectContaining({ code: 'EAGAIN' }));
        expect(() => setPipeSize?.(wfd, 0)).toThrow(RangeError);
        closeSync(wfd);
        closeSync(r);
        const file = join(dir, 'f');
        closeSync(openSync(file, 'w'));
        const f = openSync(file, 'r');
        expect(setPipeSize?.(f, 4096)).toBeLessThan(0); // not a pipe: −errno
        closeSync(f);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});
