#!/usr/bin/env node
/**
 * `remus-failover`: moves the service prefix with BGP through ExaBGP.
 *
 *   remus-failover announce --prefix P [--next-hop …] [--med …] …   announce through ExaBGP's pipe
 *   remus-failover withdraw --prefix P …                           withdraw it
 *   remus-failover status                                          ExaBGP's version, neighbors, adj-rib-out
 *   remus-failover exabgp-process --prefix P …                     run BY ExaBGP (process API): announce
 *                                                                  on every session up, withdraw on SIGTERM
 *   remus-failover witness --primary HOST:PORT --token-file F       the third site's arbiter (HTTP)
 *   remus-failover run --role backup --daemon URL --witness URL …   the controller: observe, decide, act
 *                                                                  (through the pipe, or --api process:
 *                                                                  run by ExaBGP); ExaBGP down is
 *                                                                  reported and retried, never fatal
 *
 * Routes come from flags (one route) or `--routes FILE` (a JSON array of routes: docs/failover.md).
 * Every route is checked (routes.ts) before the pipe is even opened: a refused attribute writes nothing.
 * ExaBGP is reached through its named pipes: `--pipe NAME` (found where ExaBGP looks: /run/exabgp/NAME.in,
 * …), or `--pipe-in`/`--pipe-out` paths. `--dry-run` prints the commands instead of sending them.
 * Exit statuses: README "Error codes" (RWAN_ERR_ROUTE 2, RWAN_ERR_EXABGP 11).
 */
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { Command } from 'commander';
import { RwanError } from '../errors.js';
import { type ControllerConfig, timingProblem } from '../failover/controller.js';
import { PEER_SILENCE_MS } from '../failover/daemon-view.js';
import { ExaBgpPipe, findPipes, pipeDirectories, ReopeningPipe } from '../failover/exabgp-pipe.js';
import { ExaBgpProcess } from '../failover/exabgp-process.js';
import {
  announceCommand,
  parseRoute,
  type Route,
  type RouteSpec,
  withdrawCommand,
} from '../failover/routes.js';
import { Runner } from '../failover/runner.js';
import { Witness, witnessServer } from '../failover/witness.js';
import { failoverMetrics } from '../observability/metrics.js';
import { packageVersion } from '../package-root.js';
import { type Io, processIo, runIfEntryPoint, runProgram } from './entry.js';

interface TargetOptions {
  pipe?: string;
  pipeIn?: string;
  pipeOut?: string;
  timeout: string;
  json?: boolean;
}

interface RouteOptions extends TargetOptions {
  routes?: string;
  prefix?: string;
  nextHop?: string;
  med?: string;
  localPref?: string;
  asPath?: string[];
  community?: string[];
  neighbor?: string[];
  dryRun?: boolean;
}

const collect = (v: string, prev: string[] = []) => [...prev, ...v.split(',').map((s) => s.trim())];

function targetOptions(cmd: Command, timeoutMs = 2000): Command {
  return cmd
    .option(
      '--pipe <name>',
      `ExaBGP's pipe name (exabgp.api.pipename), looked for in ${pipeDirectories().join(', ')}`,
      'exabgp',
    )
    .option('--pipe-in <path>', 'path of the command pipe (<name>.in), instead of --pipe')
    .option('--pipe-out <path>', 'path of the answer pipe (<name>.out), instead of --pipe')
    .option('--timeout <ms>', 'longest wait for ExaBGP to answer a command, ms', String(timeoutMs))
    .option('--json', 'print one JSON object');
}

function routeOptions(cmd: Command, timeoutMs?: number): Command {
  return targetOptions(cmd, timeoutMs)
    .option('--routes <file>', 'a JSON array of routes (docs/failover.md); instead of the flags below')
    .option('--prefix <cidr>', 'the service prefix, e.g. 203.0.113.0/24 or 2001:db8:10::/48')
    .option('--next-hop <addr>', 'self (default) or an address of the prefix’s family')
    .option('--med <n>', 'MULTI_EXIT_DISC')
    .option('--local-pref <n>', 'LOCAL_PREF')
    .option(
      '--as-path <asn>',
      'AS numbers for the AS_PATH, in order (repeatable, or comma-separated)',
      collect,
    )
    .option(
      '--community <c>',
      'ASN:value or no-export, no-advertise, no-export-subconfed, nopeer (repeatable)',
      collect,
    )
    .option('--neighbor <addr>', 'only to this neighbor (repeatable; default: every neighbor)', collect)
    .option('--dry-run', 'print the commands, send nothing');
}

/** The routes the options name, every one checked. */
async function routesOf(o: RouteOptions): Promise<Route[]> {
  const flags = o.prefix !== undefined || o.nextHop !== undefined || o.med !== undefined;
  if (o.routes !== undefined) {
    if (flags)
      throw new RwanError(
        'RWAN_ERR_USAGE',
        '--routes and --prefix (or its attributes) cannot be used together',
      );
    let specs: unknown;
    try {
      specs = JSON.parse(await readFile(o.routes, 'utf8'));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new RwanError(
        code === undefined ? 'RWAN_ERR_INVALID_INPUT' : 'RWAN_ERR_IO',
        `${o.routes}: ${(err as Error).message}`,
      );
    }
    if (!Array.isArray(specs) || specs.length === 0) {
      throw new RwanError('RWAN_ERR_INVALID_INPUT', `${o.routes}: expected a non-empty JSON array of routes`);
    }
    return specs.map((s, i) => parseRoute(s as RouteSpec, `${o.routes}[${i}]`));
  }
  if (o.prefix === undefined)
    throw new RwanError('RWAN_ERR_USAGE', 'give --prefix (with its attributes) or --routes FILE');
  const spec: RouteSpec = { prefix: o.prefix };
  if (o.nextHop !== undefined) spec.nextHop = o.nextHop;
  if (o.med !== undefined) spec.med = o.med;
  if (o.localPref !== undefined) spec.localPreference = o.localPref;
  if (o.asPath !== undefined) spec.asPath = o.asPath;
  if (o.community !== undefined) spec.communities = o.community;
  if (o.neighbor !== undefined) spec.neighbors = o.neighbor;
  return [parseRoute(spec, 'route')];
}

/** The pipe client the options name. */
function openPipe(o: TargetOptions): Promise<ExaBgpPipe> {
  return pipeOpener(o)();
}

/** The options checked, and a function that opens the pipe client they name (each call anew). */
function pipeOpener(o: TargetOptions): () => Promise<ExaBgpPipe> {
  const timeoutMs = Number(o.timeout);
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) {
    throw new RwanError(
      'RWAN_ERR_INVALID_VALUE',
      `--timeout ${o.timeout}: expected a positive integer of ms`,
    );
  }
  if ((o.pipeIn === undefined) !== (o.pipeOut === undefined)) {
    throw new RwanError('RWAN_ERR_USAGE', '--pipe-in and --pipe-out go together');
  }
  return async () => {
    const paths =
      o.pipeIn !== undefined && o.pipeOut !== undefined
        ? { in: o.pipeIn, out: o.pipeOut }
        : findPipes(o.pipe ?? 'exabgp');
    if (paths === undefined) {
      throw new RwanError(
        'RWAN_ERR_EXABGP',
        `no ExaBGP pipe named ${o.pipe ?? 'exabgp'} in ${pipeDirectories().join(', ')} (mkfifo NAME.in NAME.out there before starting ExaBGP)`,
        { details: { reason: 'missing' } },
      );
    }
    return ExaBgpPipe.open({ ...paths, timeoutMs });
  };
}

async function sendRoutes(kind: 'announce' | 'withdraw', o: RouteOptions, io: Io): Promise<void> {
  const routes = await routesOf(o); // every route checked before anything is opened or written
  const commands = routes.map((r) => (kind === 'announce' ? announceCommand(r) : withdrawCommand(r)));
  if (o.dryRun) {
    io.out(o.json ? `${JSON.stringify({ dryRun: true, commands })}\n` : `${commands.join('\n')}\n`);
    return;
  }
  const pipe = await openPipe(o);
  const sent: Array<{ command: string; ms: number }> = [];
  try {
    for (const c of commands) {
      const t0 = performance.now();
      await pipe.command(c);
      sent.push({ command: c, ms: Math.round((performance.now() - t0) * 10) / 10 });
    }
  } finally {
    pipe.close();
  }
  io.out(
    o.json
      ? `${JSON.stringify({ exabgp: pipe.version, sent })}\n`
      : `${sent.map((s) => `done (${s.ms} ms): ${s.command}`).join('\n')}\n`,
  );
}

async function status(o: TargetOptions, io: Io): Promise<void> {
  const pipe = await openPipe(o);
  try {
    const neighbors = await pipe.command('show neighbor summary');
    const ribOut = await pipe.command('show adj-rib out');
    io.out(
      o.json
        ? `${JSON.stringify({ exabgp: pipe.version, neighbors, adjRibOut: ribOut })}\n`
        : `${[
            pipe.version,
            '',
            'neighbors:',
            ...neighbors.map((l) => `  ${l}`),
            '',
            'adj-rib-out:',
            ...(ribOut.length ? ribOut.map((l) => `  ${l}`) : ['  (empty)']),
          ].join('\n')}\n`,
    );
  } finally {
    pipe.close();
  }
}

/**
 * Run as ExaBGP's process: announce the routes each time a BGP session comes up (ExaBGP drops API
 * routes with a session), withdraw them on SIGTERM/SIGINT, and end when ExaBGP closes stdin. Never
 * exits on a failed command (ExaBGP gives up on a program that dies five times): reports it on stderr.
 */
async function exabgpProcess(o: RouteOptions, io: Io): Promise<void> {
  const routes = await routesOf(o);
  const timeoutMs = Number(o.timeout);
  const api = new ExaBgpProcess(process.stdin, process.stdout, timeoutMs);
  const say = (msg: string, extra: Record<string, unknown> = {}) =>
    io.err(`${JSON.stringify({ time: new Date().toISOString(), msg, ...extra })}\n`);
  const send = async (kind: 'announce' | 'withdraw', why: string) => {
    for (const r of routes) {
      const c = kind === 'announce' ? announceCommand(r) : withdrawCommand(r);
      try {
        await api.command(c);
        say(`${kind} done`, { why, command: c });
      } catch (err) {
        say(`${kind} failed`, { why, command: c, error: (err as Error).message });
      }
    }
  };
  api.neighborUp((peer) => void send('announce', `neighbor ${peer} up`));
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await send('withdraw', 'stopping');
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop());
  process.once('SIGINT', () => void stop());
  say('started', { routes: routes.map((r) => r.prefix) });
  await api.ended;
  say('ExaBGP closed the process API: exiting');
}

/** `HOST:PORT` (IPv6 in brackets). */
function hostPort(v: string, what: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(v);
  const port = Number(m?.[3]);
  if (!m || !(port >= 1 && port <= 65535)) {
    throw new RwanError('RWAN_ERR_INVALID_VALUE', `${what} ${v}: expected HOST:PORT`);
  }
  return { host: (m[1] ?? m[2]) as string, port };
}

interface WitnessCliOptions {
  listen: string;
  primary?: string;
  tokenFile?: string;
  probeTimeout: string;
}

/** Serve the witness until SIGTERM/SIGINT. */
async function witness(o: WitnessCliOptions, io: Io): Promise<void> {
  if (o.primary === undefined || o.tokenFile === undefined) {
    throw new RwanError('RWAN_ERR_USAGE', 'witness needs --primary HOST:PORT and --token-file FILE');
  }
  const probeTimeoutMs = Number(o.probeTimeout);
  if (!Number.isInteger(probeTimeoutMs) || probeTimeoutMs <= 0) {
    throw new RwanError(
      'RWAN_ERR_INVALID_VALUE',
      `--probe-timeout ${o.probeTimeout}: expected a positive integer of ms`,
    );
  }
  const w = await Witness.open({
    primary: hostPort(o.primary, '--primary'),
    tokenFile: o.tokenFile,
    probeTimeoutMs,
  });
  const at = hostPort(o.listen, '--listen');
  const server = witnessServer(w);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) =>
      reject(new RwanError('RWAN_ERR_CONNECT', `witness: cannot listen on ${o.listen}: ${err.message}`)),
    );
    server.listen(at.port, at.host, () => resolve());
  });
  io.err(
    `${JSON.stringify({ time: new Date().toISOString(), msg: 'witness listening', listen: o.listen, token: w.token })}\n`,
  );
  await new Promise<void>((resolve) => {
    const stop = () => server.close(() => resolve());
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}

interface RunOptions extends RouteOptions {
  role?: string;
  site: string;
  daemon?: string;
  witness?: string;
  tokenFile?: string;
  check?: string;
  disableFile?: string;
  promoteCommand?: string;
  hook?: string;
  interval: string;
  fastInterval: string;
  rise: string;
  fall: string;
  upMed: string;
  downMed: string;
  disabledMed: string;
  withdrawOnDown?: boolean;
  fenceAfter: string;
  deadTime: string;
  metrics?: string;
  api: string;
  refresh: string;
}

/** An HTTP server answering GET `path` with `answer(path)` (404 when undefined). */
async function serveMetrics(
  at: { host: string; port: number },
  answer: (path: string) => Promise<{ type: string; body: string } | undefined>,
): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    answer(path).then(
      (a) => {
        res.writeHead(a ? 200 : 404, { 'content-type': a?.type ?? 'text/plain' });
        res.end(a?.body ?? 'not found\n');
      },
      (err: Error) => {
        res.writeHead(500);
        res.end(`${err.message}\n`);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) =>
      reject(
        new RwanError('RWAN_ERR_CONNECT', `cannot serve metrics on ${at.host}:${at.port}: ${err.message}`),
      ),
    );
    server.listen(at.port, at.host, () => resolve());
  });
  return server;
}

/** A whole number of ms (or a count) from an option, at least `min`. */
function whole(v: string, what: string, min = 1): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min)
    throw new RwanError('RWAN_ERR_INVALID_VALUE', `${what} ${v}: expected an integer ≥ ${min}`);
  return n;
}

/**
 * The controller, until SIGTERM/SIGINT: a tick every --interval ms (--fast-interval while RISING or
 * FALLING), one JSON line per decision on stderr; on the signal, a last tick that withdraws.
 */
async function run(o: RunOptions, io: Io): Promise<void> {
  if (o.role !== 'primary' && o.role !== 'backup')
    throw new RwanError('RWAN_ERR_USAGE', '--role primary|backup is required');
  if (o.daemon === undefined || o.tokenFile === undefined) {
    throw new RwanError(
      'RWAN_ERR_USAGE',
      'run needs --daemon URL (the local remus-wan /status endpoint) and --token-file FILE',
    );
  }
  const cfg: ControllerConfig = {
    role: o.role,
    rise: whole(o.rise, '--rise'),
    fall: whole(o.fall, '--fall'),
    med: {
      up: whole(o.upMed, '--up-med', 0),
      down: whole(o.downMed, '--down-med', 0),
      disabled: whole(o.disabledMed, '--disabled-med', 0),
    },
    withdrawOnDown: o.withdrawOnDown === true,
    fenceAfterMs: whole(o.fenceAfter, '--fence-after'),
  };
  const intervalMs = whole(o.interval, '--interval');
  const fastMs = whole(o.fastInterval, '--fast-interval');
  const timeoutMs = whole(o.timeout, '--timeout');
  const problem = timingProblem({
    peerSilenceMs: PEER_SILENCE_MS,
    fenceAfterMs: cfg.fenceAfterMs,
    primaryIntervalMs: intervalMs,
    commandTimeoutMs: timeoutMs,
    deadTimeMs: whole(o.deadTime, '--dead-time'),
    marginMs: 250,
  });
  if (problem !== undefined) throw new RwanError('RWAN_ERR_INVALID_VALUE', `unsafe timings: ${problem}`);
  const refreshMs = whole(o.refresh, '--refresh', 0);
  if (o.api !== 'pipe' && o.api !== 'process')
    throw new RwanError('RWAN_ERR_USAGE', `--api ${o.api}: expected pipe or process`);
  const routes = await routesOf(o); // checked before anything is opened
  // ExaBGP may be down now or later: commands then fail, are reported and retried at the next ticks
  const resync = { to: undefined as Runner | undefined }; // the runner, once made
  let exabgp: { command(line: string): Promise<string[]>; close(): void };
  let exabgpGone: Promise<void> | undefined;
  if (o.api === 'process') {
    const api = new ExaBgpProcess(process.stdin, process.stdout, timeoutMs);
    api.neighborUp((peer) => resync.to?.resync(`the BGP session with ${peer} came up`));
    exabgp = api;
    exabgpGone = api.ended;
  } else {
    exabgp = new ReopeningPipe(pipeOpener(o), () => resync.to?.resync('ExaBGP answers again'));
  }
  const runner = await Runner.create({
    cfg,
    site: o.site,
    routes,
    exabgp,
    refreshMs,
    daemonUrl: o.daemon,
    witnessUrl: o.witness ?? null,
    tokenFile: o.tokenFile,
    timeoutMs,
    log: (e) => io.err(`${JSON.stringify({ time: new Date().toISOString(), msg: 'decision', ...e })}\n`),
    ...(o.check === undefined ? {} : { checkCommand: o.check }),
    ...(o.disableFile === undefined ? {} : { disableFile: o.disableFile }),
    ...(o.promoteCommand === undefined ? {} : { promoteCommand: o.promoteCommand }),
    ...(o.hook === undefined ? {} : { hookCommand: o.hook }),
  });
  resync.to = runner;
  // metrics and the last decision over HTTP (--metrics)
  let last: Record<string, unknown> = {};
  const m = failoverMetrics({
    phase: () => runner.state.phase,
    authority: () => runner.state.authority,
    token: () => runner.state.token,
  });
  const http =
    o.metrics === undefined
      ? undefined
      : await serveMetrics(hostPort(o.metrics, '--metrics'), async (path) =>
          path === '/metrics'
            ? { type: m.registry.contentType, body: await m.registry.metrics() }
            : path === '/status'
              ? { type: 'application/json', body: `${JSON.stringify(last)}\n` }
              : undefined,
        );
  let stopping = false;
  let wake: (() => void) | undefined;
  const stop = () => {
    stopping = true;
    wake?.();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  void exabgpGone?.then(() => {
    io.err(
      `${JSON.stringify({ time: new Date().toISOString(), msg: 'ExaBGP closed the process API: stopping' })}\n`,
    );
    stop();
  });
  try {
    const tick = async (exit = false) => {
      const d = await runner.tick(exit);
      m.decided(d.actions, d.failed);
      last = {
        ...d.state,
        reasons: d.reasons,
        actions: d.actions,
        daemon: d.daemon.detail,
        witness: d.witness,
      };
    };
    while (!stopping) {
      await tick();
      const phase = runner.state.phase;
      const wait = phase === 'RISING' || phase === 'FALLING' ? fastMs : intervalMs;
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, wait);
      });
    }
    await tick(true); // withdraw everything before leaving
  } finally {
    exabgp.close();
    if (http) await new Promise<void>((r) => http.close(() => r()));
  }
}

export function createProgram(io: Io): Command {
  const program = new Command('remus-failover')
    .description('move the service prefix with BGP through ExaBGP, without split brain')
    .version(packageVersion())
    .configureOutput({ writeOut: io.out, writeErr: io.err });
  routeOptions(
    program
      .command('announce')
      .description('announce routes through ExaBGP (checked first; nothing is written on a refusal)'),
  ).action((o: RouteOptions) => sendRoutes('announce', o, io));
  routeOptions(program.command('withdraw').description('withdraw routes through ExaBGP')).action(
    (o: RouteOptions) => sendRoutes('withdraw', o, io),
  );
  routeOptions(
    program
      .command('exabgp-process')
      .description(
        'run by ExaBGP (process API, encoder json): announce on every session up, withdraw on SIGTERM',
      ),
  ).action((o: RouteOptions) => exabgpProcess(o, io));
  program
    .command('witness')
    .description(
      "the third site's arbiter: grants a backup's promotion only when it cannot reach the primary either",
    )
    .option(
      '--listen <host:port>',
      'where to serve HTTP (no TLS yet: an address only the two sites reach)',
      '127.0.0.1:7900',
    )
    .option('--primary <host:port>', "the primary's address to probe over TCP (its replication port)")
    .option('--token-file <file>', 'where the fencing token is kept')
    .option('--probe-timeout <ms>', 'a TCP connect slower than this counts as unreachable', '1000')
    .action((o: WitnessCliOptions) => witness(o, io));
  routeOptions(
    program
      .command('run')
      .description(
        'the controller: observe the daemon, the witness and the checks; announce or withdraw; promote',
      ),
    1000, // also each probe's limit; counted by the start-up timing check
  )
    .option('--role <role>', 'primary or backup')
    .option('--site <name>', 'this site’s name (for the witness and the log)', 'site')
    .option(
      '--daemon <url>',
      'the local remus-wan daemon’s HTTP endpoint (its --metrics address), e.g. http://127.0.0.1:9464',
    )
    .option(
      '--witness <url>',
      'the witness, e.g. http://192.0.2.50:7900 (without one a backup never promotes)',
    )
    .option('--token-file <file>', 'where this site keeps the fencing token')
    .option('--check <command>', 'run by sh -c each tick; exit 0 = healthy (default: healthy)')
    .option('--disable-file <file>', 'while it exists: DISABLED')
    .option('--promote-command <command>', 'run by sh -c on promotion (REMUS_FAILOVER_TOKEN set)')
    .option('--hook <command>', 'run by sh -c on each change (STATE, AUTHORITY, TOKEN set)')
    .option('--interval <ms>', 'between ticks', '200')
    .option('--fast-interval <ms>', 'between ticks while RISING or FALLING', '100')
    .option('--rise <n>', 'successes in a row to go UP', '3')
    .option('--fall <n>', 'failures in a row to go DOWN', '3')
    .option('--up-med <n>', 'MED while UP', '100')
    .option('--down-med <n>', 'MED while DOWN', '1000')
    .option('--disabled-med <n>', 'MED while DISABLED', '500')
    .option('--withdraw-on-down', 'withdraw when DOWN or DISABLED instead of a worse MED')
    .option(
      '--fence-after <ms>',
      'primary: withdraw after this long without the backup and without the witness reaching this site',
      '500',
    )
    .option(
      '--dead-time <ms>',
      'the backup daemon’s dead time (checked: the primary must withdraw before it)',
      '3000',
    )
    .option('--metrics <host:port>', 'serve Prometheus metrics (/metrics) and the last decision (/status)')
    .option(
      '--api <api>',
      'pipe: ExaBGP’s named pipes (--pipe…); process: run by ExaBGP as its process (commands on stdout)',
      'pipe',
    )
    .option(
      '--refresh <ms>',
      'send the routes again after this long without sending (an ExaBGP restart forgets them); 0: never',
      '10000',
    )
    .action((o: RunOptions) => run(o, io));
  targetOptions(
    program.command('status').description("ExaBGP's version, its neighbors and what it announces"),
  ).action((o: TargetOptions) => status(o, io));
  for (const c of program.commands) c.exitOverride().configureOutput({ writeOut: io.out, writeErr: io.err });
  return program;
}

/** Run the CLI; returns the exit status. */
export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  return runProgram('remus-failover', createProgram(io).exitOverride(), argv, io);
}

runIfEntryPoint(import.meta.url, (argv) => main(argv));
