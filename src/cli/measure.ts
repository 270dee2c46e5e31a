/**
 * `remus-plan measure …`: take measurements from a live system and write a measurement file the
 * planner reads back with `--input` (or a fleet file's `files`).
 */
import { createReadStream, createWriteStream, statSync } from 'node:fs';
import { finished } from 'node:stream/promises';
import { type Command, Option } from 'commander';
import { RwanError } from '../errors.js';
import { writeMeasurementFile } from '../measure/measurement-file.js';
import { measureQmp, type QmpDirtyRateMode } from '../measure/qemu-live.js';
import { type XenCheckpointRow, XenStreamStats } from '../measure/xen-stream.js';
import { parseCount, parseDuration } from '../units.js';
import { XenStreamReader } from '../xen/reader.js';
import type { Io } from './entry.js';

interface QmpOptions {
  socket: string;
  windows: string;
  out?: string;
  mode: QmpDirtyRateMode;
  samplePages?: number;
  repeat: number;
  guest?: string;
  timeout: string;
  quiet?: boolean;
}

interface XenStreamOptions {
  interval: string;
  out?: string;
  quiet?: boolean;
}

/** p-th percentile (0–100) of `values`, nearest rank. */
function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? 0;
}

/**
 * `measure xen-stream FILE`: read a captured `xl remus` stream ('-': standard input), write one NDJSON
 * row per checkpoint (measure/xen-stream.ts), a summary on standard error.
 */
async function measureXenStream(file: string, o: XenStreamOptions, io: Io): Promise<void> {
  const epochMs = parseDuration(o.interval, { what: '--interval' }) * 1000;
  const reader = new XenStreamReader();
  const stats = new XenStreamStats(epochMs);
  const total = file === '-' ? undefined : statSync(file, { throwIfNoEntry: false })?.size;
  const input = file === '-' ? process.stdin : createReadStream(file);
  let lastReport = performance.now();
  try {
    for await (const chunk of input) {
      for (const item of reader.push(chunk as Buffer)) stats.add(item);
      if (!o.quiet && performance.now() - lastReport > 1000) {
        lastReport = performance.now();
        const pct = total ? ` (${((100 * reader.position) / total).toFixed(0)} %)` : '';
        io.err(
          `read ${(reader.position / 2 ** 20).toFixed(0)} MiB${pct}, ${reader.checkpoints} checkpoints\n`,
        );
      }
    }
  } catch (err) {
    if (err instanceof RwanError) throw err;
    throw new RwanError('RWAN_ERR_IO', `${file}: ${(err as Error).message}`, { cause: err });
  }
  let ending: string;
  try {
    const end = reader.end();
    ending =
      end.at === 'finished'
        ? 'a finished migration stream'
        : end.at === 'checkpoint'
          ? 'the stream stops after its last checkpoint (a Remus primary stopped)'
          : 'the stream stops inside a checkpoint: that checkpoint is left out';
  } catch (err) {
    if ((err as RwanError).code !== 'RWAN_ERR_XEN_TRUNCATED') throw err;
    ending = `${(err as Error).message}: that checkpoint is left out`;
  }
  const rows: XenCheckpointRow[] = stats.rows;
  if (rows.length === 0) {
    throw new RwanError(
      'RWAN_ERR_MISSING_FIELD',
      `${file}: no complete checkpoint in the stream (${ending})`,
    );
  }
  const text = rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
  if (o.out) {
    const out = createWriteStream(o.out);
    out.end(text);
    await finished(out).catch((err: Error) => {
      throw new RwanError('RWAN_ERR_IO', `cannot write ${o.out}: ${err.message}`, { cause: err });
    });
  } else io.out(text);
  if (!o.quiet) {
    const after = rows.filter((r) => !r.full);
    const line = (what: string, values: number[], unit: (v: number) => string) =>
      `  ${what}: p50 ${unit(percentile(values, 50))}, p99 ${unit(percentile(values, 99))}, max ${unit(Math.max(...values))}`;
    const kib = (v: number) => `${(v / 1024).toFixed(1)} KiB`;
    io.err(
      [
        `${file}: ${rows.length} checkpoints (the first pass and ${after.length} more); ${ending}`,
        ...(after.length > 0
          ? [
              line(
                'dirty pages per checkpoint',
                after.map((r) => r.dirtyPages),
                String,
              ),
              line(
                'bytes per checkpoint',
                after.map((r) => r.streamBytes),
                kib,
              ),
              line(
                'state besides memory',
                after.map((r) => r.deviceStateBytes),
                kib,
              ),
            ]
          : []),
        `  the first pass: ${rows[0]?.dirtyPages} pages, ${kib(rows[0]?.streamBytes ?? 0)}`,
        `plan with: remus-plan --input ${o.out ?? 'ROWS.ndjson'} --bandwidth … --rtt …`,
      ].join('\n') + '\n',
    );
  }
}

/** Attach `measure qmp` and `measure xen-stream` to the program. */
export function addMeasureCommand(program: Command, io: Io): void {
  const measure = program
    .command('measure')
    .description('measure dirty rates on a live system and write a measurement file');
  measure
    .command('qmp')
    .description(
      'measure a running QEMU guest over QMP: calc-dirty-rate / query-dirty-rate per window (sub-second windows need\n' +
        'QEMU ≥ 8.2; older QEMUs are measured in whole seconds, noted in the file)',
    )
    .requiredOption('--socket <path>', "QEMU's QMP UNIX socket (-qmp unix:PATH,server=on,wait=off)")
    .addOption(
      new Option('--windows <list>', 'windows to measure, comma separated').default(
        '100ms,200ms,500ms,1s,2s',
      ),
    )
    .addOption(new Option('--out <file>', 'write the measurement file here (default: standard output)'))
    .addOption(
      new Option('--mode <mode>', 'QEMU measuring mode')
        .choices(['page-sampling', 'dirty-bitmap', 'dirty-ring'])
        .default('page-sampling'),
    )
    .addOption(
      new Option('--sample-pages <n>', 'pages sampled per GiB (page-sampling, 128–16384)').argParser((v) =>
        parseCount(v, { what: '--sample-pages' }),
      ),
    )
    .addOption(
      new Option('--repeat <n>', 'measurements per window, for percentiles')
        .default(1)
        .argParser((v) => parseCount(v, { what: '--repeat' })),
    )
    .addOption(new Option('--guest <name>', 'guest name recorded in the file'))
    .addOption(
      new Option('--timeout <duration>', 'time limit per QMP reply, beyond each window').default('30s'),
    )
    .addOption(new Option('--quiet', 'no progress on standard error'))
    .action(async (o: QmpOptions) => {
      const windowsS = o.windows.split(',').map((w) => parseDuration(w.trim(), { what: '--windows' }));
      const file = await measureQmp({
        socketPath: o.socket,
        windowsS,
        mode: o.mode,
        repeat: o.repeat,
        timeoutS: parseDuration(o.timeout, { what: '--timeout' }),
        ...(o.samplePages === undefined ? {} : { samplePagesPerGiB: o.samplePages }),
        ...(o.guest === undefined ? {} : { guest: o.guest }),
        ...(o.quiet ? {} : { onProgress: (msg: string) => io.err(`${msg}\n`) }),
      });
      if (o.out) await writeMeasurementFile(o.out, file);
      else io.out(`${JSON.stringify(file, null, 2)}\n`);
    });
  measure
    .command('xen-stream')
    .description(
      'per-checkpoint pages and bytes of a captured xl remus stream (FILE, or - for standard input):\n' +
        'one NDJSON row per checkpoint, which the planner reads with --input',
    )
    .argument('<file>', 'the stream xl wrote (e.g. captured with xl remus -s "tee FILE | ssh …")')
    .addOption(
      new Option(
        '--interval <duration>',
        'the checkpoint interval (xl remus -i; its default is 200 ms)',
      ).default('200ms'),
    )
    .addOption(new Option('--out <file>', 'write the rows here (default: standard output)'))
    .addOption(new Option('--quiet', 'no progress or summary on standard error'))
    .action((file: string, o: XenStreamOptions) => measureXenStream(file, o, io));
}
