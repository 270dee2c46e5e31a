#!/usr/bin/env node
/**
 * Writes a synthetic xl remus stream (src/xen/generate.ts) to a file or stdout, for tests,
 * benchmarks and trying the tools without a Xen host:
 *
 *   node tools/xen/generate.mjs --guest hvm|pv --pages 65536 --checkpoints 50 --dirty 2000
 *        [--live 2] [--zipf 1] [--seed 1] [--be] [--migration] [--out FILE]
 *
 * Needs `npm run build` (dist/src/xen).
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { generateXenStream } from '../../dist/src/xen/generate.js';
import { XenStreamWriter } from '../../dist/src/xen/writer.js';

const { values: o } = parseArgs({
  options: {
    guest: { type: 'string', default: 'hvm' },
    pages: { type: 'string', default: '4096' },
    checkpoints: { type: 'string', default: '10' },
    dirty: { type: 'string', default: '200' },
    live: { type: 'string', default: '0' },
    zipf: { type: 'string', default: '1' },
    seed: { type: 'string', default: '1' },
    be: { type: 'boolean', default: false },
    migration: { type: 'boolean', default: false },
    out: { type: 'string' },
  },
});
if (o.guest !== 'hvm' && o.guest !== 'pv') {
  process.stderr.write('--guest hvm|pv\n');
  process.exit(2);
}
const w = new XenStreamWriter();
const parts = [];
for (const item of generateXenStream({
  guest: o.guest,
  pages: Number(o.pages),
  checkpoints: o.migration ? 0 : Number(o.checkpoints),
  dirtyPages: Number(o.dirty),
  liveIterations: Number(o.live),
  zipf: Number(o.zipf),
  seed: Number(o.seed),
  endian: o.be ? 'be' : 'le',
  end: o.migration ? 'migration' : 'checkpoint',
})) {
  parts.push(w.encode(item));
}
const bytes = Buffer.concat(parts);
if (o.out) writeFileSync(o.out, bytes);
else process.stdout.write(bytes);
