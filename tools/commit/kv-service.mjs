#!/usr/bin/env node
/**
 * A small key-value service whose whole state lives in one file, for the output-commit proof: the
 * file is what `remus-wan send` replicates. Line protocol over TCP: `SET KEY VALUE\n` stores VALUE in
 * KEY's 64-byte slot of the file (pwrite), then answers `OK KEY VALUE\n`; `GET KEY\n` answers the
 * slot's text. Keys are slot numbers.
 *
 *   node tools/commit/kv-service.mjs --file state.img --listen 127.0.0.1:8081
 */
import { openSync, readSync, writeSync } from 'node:fs';
import { createServer } from 'node:net';
import { parseArgs } from 'node:util';

const { values: o } = parseArgs({ options: { file: { type: 'string' }, listen: { type: 'string' } } });
if (!o.file || !o.listen) {
  process.stderr.write('usage: kv-service.mjs --file FILE --listen HOST:PORT\n');
  process.exit(2);
}
const SLOT = 64;
const fd = openSync(o.file, 'r+');
const [host, port] = [
  o.listen.slice(0, o.listen.lastIndexOf(':')),
  Number(o.listen.slice(o.listen.lastIndexOf(':') + 1)),
];
const server = createServer((c) => {
  let buf = '';
  c.on('data', (d) => {
    buf += d;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const [op, key, value] = buf.slice(0, nl).split(' ');
      buf = buf.slice(nl + 1);
      const k = Number(key);
      if (op === 'SET' && Number.isInteger(k) && value) {
        const slot = Buffer.alloc(SLOT);
        slot.write(`${k}=${value}`);
        writeSync(fd, slot, 0, SLOT, k * SLOT);
        c.write(`OK ${k} ${value}\n`);
      } else if (op === 'GET' && Number.isInteger(k)) {
        const slot = Buffer.alloc(SLOT);
        readSync(fd, slot, 0, SLOT, k * SLOT);
        c.write(`${slot.toString().replace(/\0+$/, '')}\n`);
      } else c.write('ERR\n');
    }
  });
  c.on('error', () => undefined);
});
server.listen(port, host, () => process.stdout.write('listening\n'));
