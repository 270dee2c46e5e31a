#!/usr/bin/env node
/**
 * Stands in for the backup's `xl migrate-receive -r [-e]` in tests and benchmarks: it writes xl's
 * banner on stdout, reads the stream on stdin to its end, and reports on stderr, as one JSON line,
 * what a Remus receiver would restore: the bytes, the checkpoints complete, where the stream stopped
 * (xenstream reader), and with --expect FILE whether the bytes are the expected ones.
 *
 *   node tools/xen/xl-receiver.mjs [--expect FILE] [--out FILE] [--times FILE] [--say TEXT]
 *        [ignored: HOST xl migrate-receive -r -e]
 *
 * --say writes TEXT on stdout (the back channel) once the stream has begun.
 *
 * It also writes one JSON line per CHECKPOINT_END received to --times FILE, with the time it came.
 * Exit 0 when the stream read cleanly (and matches --expect), 1 otherwise.
 * Needs `npm run build` (dist/src/xen).
 */
import { readFileSync, writeFileSync, writeSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { LibxlRecord, XL_BANNER } from '../../dist/src/xen/format.js';
import { XenStreamReader } from '../../dist/src/xen/reader.js';

const { values: o } = parseArgs({
  options: {
    expect: { type: 'string' },
    out: { type: 'string' },
    times: { type: 'string' },
    say: { type: 'string' },
  },
  allowPositionals: true,
  strict: false, // xl's own arguments (HOST xl migrate-receive -r -e) follow and are not ours
});
writeSync(1, XL_BANNER);
const reader = new XenStreamReader();
const chunks = [];
const times = [];
let error = null;
const t0 = Date.now();
for await (const chunk of process.stdin) {
  // --say: something on the back channel (stdout after the banner), once the stream has begun
  if (o.say && chunks.length === 0) writeSync(1, o.say);
  chunks.push(chunk);
  if (error) continue;
  try {
    for (const item of reader.push(chunk)) {
      if (item.kind === 'libxl-record' && item.type === LibxlRecord.CHECKPOINT_END) {
        times.push(
          JSON.stringify({ checkpoint: item.checkpoint, at: Date.now(), sinceStartMs: Date.now() - t0 }),
        );
      }
    }
  } catch (err) {
    error = { code: err.code, message: err.message };
  }
}
const bytes = Buffer.concat(chunks);
let end = null;
try {
  if (!error) end = reader.end();
} catch (err) {
  end = { at: 'truncated', message: err.message, checkpoints: reader.checkpoints };
}
const report = { bytes: bytes.length, end, error };
if (o.expect) report.identical = bytes.equals(readFileSync(o.expect));
if (o.out) writeFileSync(o.out, bytes);
if (o.times) writeFileSync(o.times, times.length ? `${times.join('\n')}\n` : '');
process.stderr.write(`${JSON.stringify({ xlReceiver: report })}\n`);
process.exit(error || report.identical === false ? 1 : 0);
