#!/usr/bin/env node
/**
 * `remus-plan`: will Remus-style replication work between two sites, and what will it cost?
 * A thin shell: parse options, load inputs, call the planner, render. Exit codes: README "Error codes".
 */
import { writeFile } from 'node:fs/promises';
import { Command, Option } from 'commander';
import { RwanError } from '../errors.js';
import { type FleetFileData, fleetJsonSchema, parseFleet } from '../measure/fleet-file.js';
import { readText } from '../measure/inputs.js';
import { baseDirOf, pagesEntry, resolveFleet } from '../measure/resolve.js';
import { packageVersion } from '../package-root.js';
import { plan } from '../planner/plan.js';
import { CongestionControls, Models, Modes, type PlanResult } from '../planner/types.js';
import {
  parseBytes,
  parseCount,
  parseDistanceKm,
  parseDuration,
  parseEpochs,
  parseFraction,
  parseRate,
  parseRatio,
  splitAt,
} from '../units.js';
import { type Io, processIo, runIfEntryPoint, runProgram } from './entry.js';
import { addMeasureCommand } from './measure.js';
import { renderCsv, renderText } from './render-text.js';

/** A commander argument parser that validates with one of our unit parsers and keeps the text. */
function check(flag: string, parse: (text: string, o: { what: string }) => unknown) {
  return (value: string) => {
    parse(value, { what: flag });
    return value;
  };
}

function collect(flag: string, parse?: (text: string, o: { what: string }) => unknown) {
  return (value: string, previous: string[] = []) => {
    parse?.(value, { what: flag });
    return [...previous, value];
  };
}

function checkAt(flag: string, parseValue: (text: string, o: { what: string }) => unknown) {
  return collect(flag, (text) => {
    const { value, window } = splitAt(text, { what: flag });
    parseValue(value, { what: flag });
    parseDuration(window, { what: `${flag} window` });
  });
}

function int(flag: string) {
  return (value: string) => parseCount(value, { what: flag });
}

interface PlanOptions {
  fleet?: string;
  name?: string;
  dirtyRate?: string[];
  dirtyPages?: string[];
  input?: string[];
  pageSize?: string;
  memory?: string;
  diskWrite?: string;
  deviceState?: string;
  model?: (typeof Models)[number];
  compression?: string;
  diskCompression?: string;
  samplePages?: string;
  bandwidth?: string;
  rtt?: string;
  distance?: string;
  loss?: string;
  mss?: number;
  channels?: number;
  tcpWindow?: string;
  cc?: (typeof CongestionControls)[number];
  latencyBudget?: string;
  budgetStat?: 'mean' | 'max';
  headroom?: string;
  mode?: (typeof Modes)[number];
  pause?: string;
  epoch?: string;
  percentile?: number;
  inFlight?: number;
  copiesBelow?: string;
  maxPause?: string;
  framing?: number;
  json?: boolean;
  csv?: boolean;
  svg?: string;
  failOnInfeasible?: boolean;
}

/** Build the `remus-plan` program. */
export function createProgram(io: Io = processIo): Command {
  const program = new Command('remus-plan');
  program
    .version(packageVersion(), '-V, --version', 'print the version')
    .description(
      'Size Remus-style VM replication over a WAN: checkpoint size, bandwidth, added client latency, ' +
        'RTT ceiling, best epoch length, and whether a link holds a fleet — from measured dirty rates.',
    )
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText(
      'after',
      `
Examples:
  remus-plan --dirty-rate 12MiB/s@100ms --dirty-rate 5MiB/s@1s --bandwidth 100Mbit/s --rtt 25ms
  remus-plan --input qemu-dirty-rate.json --bandwidth 1Gbps --distance 1200km --loss 0.1% --epoch 10ms..1s
  remus-plan --fleet examples/fleet.json --json
  remus-plan measure qmp --socket /run/qemu/vm1.qmp --windows 100ms,200ms,500ms,1s,2s --out vm1.json

Units: durations 25ms 1s 250us; rates 100Mbit/s 1Gbps 12MiB/s 500KB/s; sizes 4KiB 1.5GB; fractions 0.1% 0.001.
Exit status: 0 plan printed; 2 bad option or value; 3 bad input file; 4 I/O error; 5 QMP error; 10 infeasible
with --fail-on-infeasible.`,
    );

  program
    .addOption(
      new Option(
        '--fleet <file>',
        'fleet file (JSON): guests, link, policy; options below override its link and policy',
      ),
    )
    .addOption(
      new Option(
        '--name <name>',
        'name of the guest described by the options (default: from its measurement file, else "guest")',
      ),
    )
    .addOption(
      new Option(
        '--dirty-rate <rate@window>',
        'a measured dirty rate, e.g. 12MiB/s@100ms (repeatable)',
      ).argParser(checkAt('--dirty-rate', parseRate)),
    )
    .addOption(
      new Option(
        '--dirty-pages <n@window>',
        'unique pages dirtied in a window, e.g. 3000@100ms (repeatable)',
      ).argParser(checkAt('--dirty-pages', parseCount)),
    )
    .addOption(
      new Option(
        '-i, --input <file>',
        'measurement file, format detected: QEMU query-dirty-rate replies or HMP text, virsh domstats --dirtyrate, CSV/NDJSON trace, remus-wan stats, measure qmp output (repeatable)',
      ).argParser(collect('--input')),
    )
    .addOption(
      new Option('--page-size <size>', 'guest page size (default 4KiB)').argParser(
        check('--page-size', parseBytes),
      ),
    )
    .addOption(
      new Option('--memory <size>', 'guest RAM: caps the dirty set').argParser(check('--memory', parseBytes)),
    )
    .addOption(
      new Option('--disk-write <rate>', 'disk write rate mirrored with each checkpoint').argParser(
        check('--disk-write', parseRate),
      ),
    )
    .addOption(
      new Option('--device-state <size>', 'device/CPU state per checkpoint').argParser(
        check('--device-state', parseBytes),
      ),
    )
    .addOption(new Option('--model <model>', 'D(T) model').choices(Models))
    .addOption(
      new Option('--compression <ratio>', 'memory wire/raw ratio, e.g. 0.3, 30% or 4:1').argParser(
        check('--compression', parseRatio),
      ),
    )
    .addOption(
      new Option('--disk-compression <ratio>', 'disk wire/raw ratio').argParser(
        check('--disk-compression', parseRatio),
      ),
    )
    .addOption(new Option('--sample-pages <file>', 'raw page dump: measure the compression ratio with zstd'))
    .addOption(
      new Option('--bandwidth <rate>', 'link capacity available to replication, e.g. 100Mbit/s').argParser(
        check('--bandwidth', parseRate),
      ),
    )
    .addOption(
      new Option('--rtt <duration>', 'round-trip time, e.g. 25ms').argParser(
        check('--rtt', (t, o) => parseDuration(t, { ...o, allowZero: true })),
      ),
    )
    .addOption(
      new Option('--distance <km>', 'fibre route length instead of --rtt (≈1 ms RTT per 100 km)').argParser(
        check('--distance', parseDistanceKm),
      ),
    )
    .addOption(
      new Option('--loss <fraction>', 'packet loss, e.g. 0.1%').argParser(check('--loss', parseFraction)),
    )
    .addOption(
      new Option('--mss <bytes>', 'TCP payload bytes per segment (default 1448)').argParser(int('--mss')),
    )
    .addOption(new Option('--channels <n>', 'parallel TCP channels (default 1)').argParser(int('--channels')))
    .addOption(
      new Option('--tcp-window <size>', 'largest TCP window (default 4MiB)').argParser(
        check('--tcp-window', parseBytes),
      ),
    )
    .addOption(
      new Option('--cc <algorithm>', 'congestion control for the loss ceiling (default cubic)').choices(
        CongestionControls,
      ),
    )
    .addOption(
      new Option('--latency-budget <duration>', 'added-latency budget, e.g. 150ms').argParser(
        check('--latency-budget', parseDuration),
      ),
    )
    .addOption(
      new Option('--budget-stat <stat>', 'which latency the budget bounds (default mean)').choices([
        'mean',
        'max',
      ]),
    )
    .addOption(
      new Option('--headroom <fraction>', 'share of the link kept free (default 20%)').argParser(
        check('--headroom', parseFraction),
      ),
    )
    .addOption(
      new Option('--mode <mode>', 'checkpoint timing: xl (default), periodic, pipelined').choices(Modes),
    )
    .addOption(
      new Option('--pause <base,per-page>', 'pause model (default 0.6ms,3.7us, fitted to Remus Fig. 5)'),
    )
    .addOption(
      new Option(
        '--epoch <spec>',
        'epoch(s): 100ms, 50ms,100ms,200ms or a sweep 10ms..1s[:N] (default 25ms..1s, six points)',
      ).argParser(check('--epoch', (t, o) => parseEpochs(t, o))),
    )
    .addOption(
      new Option(
        '--percentile <p>',
        'percentile of per-epoch bytes for peaks and fleet bursts (default 99)',
      ).argParser(percentileArg),
    )
    .addOption(
      new Option('--in-flight <n>', 'epochs in flight in pipelined mode (default 4)').argParser(
        int('--in-flight'),
      ),
    )
    .option(
      '--copies-below <size|off>',
      "pipelined mode, 2+ channels: checkpoints up to this size go on two channels at once, as remus-wan's --copies-below (default off)",
    )
    .addOption(
      new Option(
        '--max-pause <fraction>',
        'largest share of time the guest may be paused (default 10%)',
      ).argParser(check('--max-pause', parseFraction)),
    )
    .addOption(
      new Option('--framing <bytes>', 'per-page framing bytes on the wire (default 8)').argParser((v) =>
        parseCount(v, { what: '--framing', allowZero: true }),
      ),
    )
    .addOption(new Option('--json', 'print the plan as JSON').conflicts('csv'))
    .addOption(new Option('--csv', 'print one CSV row per guest and epoch'))
    .addOption(new Option('--svg <file>', 'also draw bandwidth and latency against epoch into an SVG file'))
    .addOption(
      new Option(
        '--fail-on-infeasible',
        'exit 10 when a guest cannot be protected or the fleet does not fit',
      ),
    )
    .action(async (opts: PlanOptions) => {
      const doc = await buildDocument(opts);
      const resolved = await resolveFleet(doc.data, doc.baseDir);
      const result = plan(resolved.guests, resolved.link, resolved.policy);
      if (opts.svg) await writeSvg(opts.svg, result);
      io.out(
        opts.json
          ? `${JSON.stringify(result, null, 2)}\n`
          : opts.csv
            ? renderCsv(result)
            : renderText(result),
      );
      if (opts.failOnInfeasible && (!result.fleet.feasible || result.guests.some((g) => !g.recommended))) {
        throw new RwanError('RWAN_ERR_INFEASIBLE', 'the plan does not fit: see the reasons above', {
          details: { guests: result.guests.filter((g) => !g.recommended).map((g) => g.name) },
        });
      }
    });

  program
    .command('schema')
    .description('print the JSON Schema of the fleet file')
    .action(() => io.out(`${JSON.stringify(fleetJsonSchema(), null, 2)}\n`));

  addMeasureCommand(program, io);
  return program;
}

function percentileArg(value: string): number {
  const p = Number(value);
  if (!(p > 0 && p <= 100)) {
    throw new RwanError(
      'RWAN_ERR_INVALID_VALUE',
      `--percentile: cannot use ${JSON.stringify(value)}: expected a number in (0, 100]`,
      {
        details: { value },
      },
    );
  }
  return p;
}

async function writeSvg(path: string, result: PlanResult): Promise<void> {
  const { renderSvg } = await import('./render-svg.js');
  const svg = await renderSvg(result);
  try {
    await writeFile(path, svg);
  } catch (cause) {
    throw new RwanError('RWAN_ERR_IO', `cannot write ${path}`, { cause, details: { path } });
  }
}

/** The fleet document the options describe: the fleet file (if any) with the options laid over it. */
async function buildDocument(o: PlanOptions): Promise<{ data: FleetFileData; baseDir: string }> {
  const guestFlags = [o.dirtyRate, o.dirtyPages, o.input].some((v) => v && v.length > 0);
  let data: FleetFileData;
  let baseDir = process.cwd();
  if (o.fleet) {
    const text = await readText(o.fleet);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (cause) {
      throw new RwanError('RWAN_ERR_INVALID_INPUT', `${o.fleet}: not JSON (${(cause as Error).message})`, {
        cause,
        details: { source: o.fleet },
      });
    }
    data = parseFleet(value, o.fleet);
    baseDir = baseDirOf(o.fleet);
    if (guestFlags) {
      throw new RwanError(
        'RWAN_ERR_USAGE',
        '--dirty-rate, --dirty-pages and --input describe a guest; with --fleet, put the guest in the fleet file',
        {
          details: {},
        },
      );
    }
  } else {
    if (!guestFlags) {
      throw new RwanError(
        'RWAN_ERR_USAGE',
        'nothing to plan: give --fleet FILE, or --dirty-rate/--dirty-pages/--input with --bandwidth and --rtt',
        {
          details: {},
        },
      );
    }
    const measurements = [
      ...(o.dirtyRate ?? []).map((text) => {
        const { value, window } = splitAt(text);
        return { window, rate: value };
      }),
      ...(o.dirtyPages ?? []).map((text) => {
        const { value, window } = splitAt(text);
        return pagesEntry(value, window);
      }),
    ];
    // An empty name is filled in from the measurement files (see resolveFleet).
    data = { guests: [{ name: o.name ?? '', measurements, files: o.input ?? [] }] };
  }
  // Options override the file's guest-independent settings, and fill in guest settings for a CLI guest.
  const link = { ...data.link };
  const set = <T extends object, K extends keyof T>(target: T, key: K, value: T[K] | undefined) => {
    if (value !== undefined) target[key] = value;
  };
  set(link, 'bandwidth', o.bandwidth);
  if (o.rtt !== undefined) {
    link.rtt = o.rtt;
    delete link.distance;
  }
  if (o.distance !== undefined) {
    if (o.rtt !== undefined)
      throw new RwanError('RWAN_ERR_USAGE', 'give --rtt or --distance, not both', { details: {} });
    link.distance = o.distance;
    delete link.rtt;
  }
  set(link, 'loss', o.loss);
  set(link, 'mss', o.mss);
  set(link, 'channels', o.channels);
  set(link, 'tcpWindow', o.tcpWindow);
  set(link, 'cc', o.cc);
  const policy = { ...data.policy };
  set(policy, 'mode', o.mode);
  set(policy, 'epoch', o.epoch);
  set(policy, 'latencyBudget', o.latencyBudget);
  set(policy, 'budgetStat', o.budgetStat);
  set(policy, 'headroom', o.headroom);
  set(policy, 'pause', o.pause);
  set(policy, 'framing', o.framing);
  set(policy, 'percentile', o.percentile);
  set(policy, 'inFlight', o.inFlight);
  set(policy, 'copiesBelow', o.copiesBelow);
  set(policy, 'maxPause', o.maxPause);
  const guests = data.guests.map((g) => {
    const out = { ...g };
    set(out, 'pageSize', o.pageSize);
    set(out, 'memory', o.memory);
    set(out, 'diskWrite', o.diskWrite);
    set(out, 'deviceState', o.deviceState);
    set(out, 'model', o.model);
    set(out, 'compression', o.compression);
    set(out, 'diskCompression', o.diskCompression);
    set(out, 'samplePages', o.samplePages);
    return out;
  });
  return { data: { ...data, link, policy, guests }, baseDir };
}

/**
 * Run the program; returns the exit status. Errors are printed as `remus-plan: CODE: message`
 * (and as JSON on stderr with --json).
 */
export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  return runProgram('remus-plan', createProgram(io).exitOverride(), argv, io);
}

runIfEntryPoint(import.meta.url, (argv) => main(argv));
