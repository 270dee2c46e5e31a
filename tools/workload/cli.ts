/**
 * Writes a synthetic workload as a page-log file (docs/page-log.md, docs/workload.md).
 *
 *   node dist/tools/workload/cli.js --pages 16384 --epochs 50 --dirty 1000 --seed 1 --out FILE
 *
 * Options: --pages N (required), --page-size B (4096), --epochs N (100), --dirty N (mean dirty pages
 * per epoch) or --dirty-fraction F (default 0.02), --burst F (0.25), --zipf S (1.0), --cluster N (8),
 * --seed N (1), --mix sparse=0.7,append=0.22,rewrite=0.04,zero=0.03,copy=0.01,
 * --content text=0.2,structured=0.3,random=0.1,zero=0.4, --no-initial (omit epoch 0, the full
 * initial memory), --out FILE (required), --quiet.
 */
import { parseArgs } from 'node:util';
import { isRwanError, RwanError } from '../../src/errors.js';
import { type ContentMix, type MutationMix, Workload, type WorkloadOptions } from './generator.js';
import { PageLogWriter } from './page-log.js';

function usage(message: string): never {
  throw new RwanError('RWAN_ERR_USAGE', `workload: ${message}`);
}

function number(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) usage(`--${name} must be a number, got "${v}"`);
  return n;
}

function weights(name: string, v: string | undefined): Record<string, number> | undefined {
  if (v === undefined) return undefined;
  const out: Record<string, number> = {};
  for (const part of v.split(',')) {
    const [k, x, extra] = part.split('=');
    const n = Number(x);
    if (!k || x === undefined || extra !== undefined || x.trim() === '' || !Number.isFinite(n)) {
      usage(`--${name} takes key=weight pairs separated by commas, got "${part}"`);
    }
    out[k.trim()] = n;
  }
  return out;
}

export function main(argv: string[]): number {
  const { values } = parseArgs({
    args: argv,
    options: {
      pages: { type: 'string' },
      'page-size': { type: 'string' },
      epochs: { type: 'string' },
      dirty: { type: 'string' },
      'dirty-fraction': { type: 'string' },
      burst: { type: 'string' },
      zipf: { type: 'string' },
      cluster: { type: 'string' },
      seed: { type: 'string' },
      mix: { type: 'string' },
      content: { type: 'string' },
      'no-initial': { type: 'boolean', default: false },
      out: { type: 'string' },
      quiet: { type: 'boolean', default: false },
    },
  });
  const pages = number('pages', values.pages);
  if (pages === undefined) usage('--pages is required');
  if (values.out === undefined) usage('--out FILE is required');
  const o: WorkloadOptions = { pages };
  const set = <K extends keyof WorkloadOptions>(k: K, v: WorkloadOptions[K] | undefined): void => {
    if (v !== undefined) o[k] = v;
  };
  set('pageSize', number('page-size', values['page-size']));
  set('epochs', number('epochs', values.epochs));
  set('dirtyPerEpoch', number('dirty', values.dirty));
  set('dirtyFraction', number('dirty-fraction', values['dirty-fraction']));
  set('burst', number('burst', values.burst));
  set('zipf', number('zipf', values.zipf));
  set('cluster', number('cluster', values.cluster));
  set('seed', number('seed', values.seed));
  set('mix', weights('mix', values.mix) as MutationMix | undefined);
  set('content', weights('content', values.content) as ContentMix | undefined);

  const t0 = process.hrtime.bigint();
  const w = new Workload(o);
  const writer = PageLogWriter.create(values.out, { pageSize: w.pageSize, meta: w.describe() });
  if (!values['no-initial']) {
    const all = new Uint32Array(w.pages);
    for (let i = 0; i < w.pages; i++) all[i] = i;
    writer.writeEpochFromMemory(0, all, w.memory);
  }
  for (const e of w) writer.writeEpochFromMemory(e.epoch, e.pfns, e.memory);
  const totals = writer.close();
  if (!values.quiet) {
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    process.stderr.write(
      `workload: wrote ${values.out}: ${totals.epochs} epochs, ${totals.pages} pages, ` +
        `${(totals.bytes / 2 ** 20).toFixed(1)} MiB in ${s.toFixed(2)} s\n`,
    );
  }
  return 0;
}

if (process.argv[1]?.endsWith('workload/cli.js')) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (err) {
    if (isRwanError(err)) {
      process.stderr.write(`${err.message} [${err.code}]\n`);
      process.exitCode = err.exitCode;
    } else if (err instanceof TypeError && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`workload: ${err.message}\n`);
      process.exitCode = 2;
    } else throw err;
  }
}
