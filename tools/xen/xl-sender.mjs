#!/usr/bin/env node
/**
 * Stands in for the primary's `xl remus -s CMD … DOMAIN HOST` in tests and benchmarks: it runs
 * `sh -c "exec CMD HOST xl migrate-receive -r [ -e]"` with two pipes as xl does (create_migration_child:
 * the child's stdin and stdout), checks the receiver's banner byte for byte, then writes a stream
 * (a file, or one made by the generator) as xl writes it: the xl save header, then each record with
 * one blocking write, a checkpoint interval apart. It records when each checkpoint's last write
 * (CHECKPOINT_END) returned: that is when xl releases the checkpoint's network output.
 *
 *   node tools/xen/xl-sender.mjs --cmd "remus-wan tunnel …" --host backup [--e] --stream FILE
 *        [--interval 100] [--log FILE] [--end close|wait]
 *
 * The pipes are FIFOs in a temporary directory (Node has no pipe(2)); to the child they are pipes.
 * One JSON line per checkpoint goes to --log (or stdout): { checkpoint, returnedMs (since the stream
 * began), tailMs (from libxc CHECKPOINT, when xl resumes the guest, to the return of CHECKPOINT_END's
 * write, when it releases the output), bytes }.
 * Exit 0 when the stream was written, 3 on a wrong banner, 4 when the child closed its stdin early.
 * Needs `npm run build` (it reads the stream with dist/src/xen).
 */
import { execFileSync, spawn } from 'node:child_process';
import {
  closeSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { LibxcRecord, LibxlRecord, XL_BANNER } from '../../dist/src/xen/format.js';
import { readXenStream } from '../../dist/src/xen/reader.js';
import { XenStreamWriter } from '../../dist/src/xen/writer.js';

const { values: o } = parseArgs({
  options: {
    cmd: { type: 'string' },
    host: { type: 'string', default: 'backup' },
    e: { type: 'boolean', default: false },
    stream: { type: 'string' },
    interval: { type: 'string', default: '100' },
    log: { type: 'string' },
    end: { type: 'string', default: 'close' },
  },
});
if (!o.cmd || !o.stream) {
  process.stderr.write(
    'usage: xl-sender.mjs --cmd CMD --host HOST [--e] --stream FILE [--interval MS] [--log FILE]\n',
  );
  process.exit(2);
}
const dir = mkdtempSync(join(tmpdir(), 'xl-sender-'));
const toChild = join(dir, 'send');
const fromChild = join(dir, 'recv');
execFileSync('mkfifo', [toChild, fromChild]);
const rune = `exec ${o.cmd} ${o.host} xl migrate-receive -r${o.e ? ' -e' : ''} < ${toChild} > ${fromChild}`;
const child = spawn('sh', ['-c', rune], { stdio: ['ignore', 'inherit', 'inherit'] });
let childExit = null;
child.on('exit', (code, signal) => {
  childExit = { code, signal };
});
const out = openSync(toChild, 'w'); // blocks until the child's shell opens its stdin
const back = openSync(fromChild, 'r');
rmSync(dir, { recursive: true, force: true }); // both ends are open: the names are no longer needed

const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
const lines = [];
const say = (row) => {
  lines.push(JSON.stringify(row));
  if (!o.log) process.stdout.write(`${JSON.stringify(row)}\n`);
};

// the banner, byte for byte (xl: migrate_read_fixedmessage)
const banner = Buffer.from(XL_BANNER);
const got = Buffer.alloc(banner.length);
for (let n = 0; n < got.length; ) {
  const r = readSync(back, got, n, got.length - n, null);
  if (r === 0) {
    process.stderr.write(
      `xl-sender: the receiver closed before its banner (${n} bytes: ${JSON.stringify(got.subarray(0, n).toString())})\n`,
    );
    process.exit(3);
  }
  n += r;
}
if (!got.equals(banner)) {
  process.stderr.write(`xl-sender: wrong banner ${JSON.stringify(got.toString())}\n`);
  process.exit(3);
}

const { items } = readXenStream(readFileSync(o.stream));
const w = new XenStreamWriter();
const t0 = performance.now();
let written = 0;
let resumedAt = 0;
try {
  for (const item of items) {
    const bytes = w.encode(item);
    for (let at = 0; at < bytes.length; ) at += writeSync(out, bytes, at);
    written += bytes.length;
    // xl resumes the guest after libxc's CHECKPOINT; the libxl tail (emulator records and
    // CHECKPOINT_END) follows, and the output is released when its last write returns
    if (item.kind === 'libxc-record' && item.type === LibxcRecord.CHECKPOINT) resumedAt = performance.now();
    if (item.kind === 'libxl-record' && item.type === LibxlRecord.CHECKPOINT_END) {
      const now = performance.now();
      say({
        checkpoint: item.checkpoint,
        returnedMs: +(now - t0).toFixed(3),
        tailMs: +(now - resumedAt).toFixed(3),
        bytes: written,
      });
      sleep(Number(o.interval));
    }
  }
} catch (err) {
  process.stderr.write(`xl-sender: writing: ${err.message}\n`);
  if (o.log) writeFileSync(o.log, `${lines.join('\n')}\n`);
  process.exit(4);
}
if (o.log) writeFileSync(o.log, `${lines.join('\n')}\n`);
if (o.end === 'wait') sleep(2 ** 31 - 1);
closeSync(out); // the primary stops: the receiver sees the end of the stream
const waitExit = () =>
  new Promise((r) => (childExit ? r(childExit) : child.once('exit', (code, signal) => r({ code, signal }))));
// what the receiver wrote after its banner (xl's back channel), to its end
const backChannel = [];
for (;;) {
  const n = readSync(back, got, 0, got.length, null);
  if (n === 0) break;
  backChannel.push(Buffer.from(got.subarray(0, n)));
}
const exit = await waitExit();
closeSync(back);
process.stderr.write(`${JSON.stringify({ backChannel: Buffer.concat(backChannel).toString() })}\n`);
process.stderr.write(`xl-sender: ${written} bytes written; the command exited ${JSON.stringify(exit)}\n`);
process.exit(0);
