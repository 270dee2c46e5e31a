/**
 * `remus-plan measure …`: take measurements from a live system and write a measurement file the
 * planner reads back with `--input` (or a fleet file's `files`).
 */
import { type Command, Option } from 'commander';
import { writeMeasurementFile } from '../measure/measurement-file.js';
import { measureQmp, type QmpDirtyRateMode } from '../measure/qemu-live.js';
import { parseCount, parseDuration } from '../units.js';
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

/** Attach `measure qmp` to the program. */
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
}
