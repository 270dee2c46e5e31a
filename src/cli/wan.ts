#!/usr/bin/env -S node --max-semi-space-size=2
/**
 * `remus-wan`: the replication daemon pair and its tools.
 *
 *   remus-wan send     --connect HOST:PORT --image FILE …   on the primary: replicate FILE epoch by epoch
 *   remus-wan receive  --listen HOST:PORT --store DIR …     on the backup: keep the replica, detect loss
 *   remus-wan tunnel   [options] HOST xl migrate-receive -r   run by xl remus -s: the Xen stream to the backup
 *   remus-wan xen-receive --listen HOST:PORT …              on the backup: the tunnel's stream to xl
 *   remus-wan status   --url http://127.0.0.1:9464          what a daemon is doing (its /status)
 *   remus-wan rate     --url … --rate 50Mbit/s | --off      change a sender's bandwidth cap while it runs
 *   remus-wan certs    --out DIR --host NAME …              a CA and host certificates for mutual TLS
 *
 * Every daemon option can also come from `--config FILE` (JSON, docs/daemon.md); flags win.
 * Exit statuses: README "Error codes".
 *
 * The first line runs Node with a small young generation (--max-semi-space-size=2, in MiB): the
 * daemons make much short-lived garbage (frames, views), and V8's default let the receiver keep 32 MiB
 * of nursery resident for it, at no measurable CPU saving (docs/daemon.md, Memory).
 */
import { readFile } from 'node:fs/promises';
import { Command, Option } from 'commander';
import {
  type ConfigFile,
  DEFAULTS,
  merge,
  receiveSettings,
  sendSettings,
  tunnelSettings,
  xenReceiveSettings,
} from '../daemon/config.js';
import { runReceive, runSend } from '../daemon/run.js';
import { RwanError } from '../errors.js';
import { packageVersion } from '../package-root.js';
import { type Io, processIo, runIfEntryPoint, runProgram } from './entry.js';
import { registerCerts } from './wan-certs.js';

/** Options both daemons take. */
function common(cmd: Command): Command {
  return cmd
    .option('--config <file>', 'JSON config file (docs/daemon.md); flags given here win over it')
    .option('--tls-ca <file>', 'TLS: CA certificate the peer must be signed by (PEM)')
    .option('--tls-cert <file>', "TLS: this host's certificate (PEM)")
    .option('--tls-key <file>', "TLS: this host's private key (PEM)")
    .addOption(
      new Option(
        '--peer-name <name>',
        'TLS: accept only a peer whose certificate names this (repeatable)',
      ).argParser((v: string, prev: string[] = []) => [...prev, v]),
    )
    .option('--psk-identity <id>', 'PSK: identity (instead of certificates)')
    .option('--psk-key-file <file>', 'PSK: file with the key, hex or base64, at least 16 random bytes')
    .option('--insecure', 'plaintext TCP: only on a link that is already protected (a VPN, a lab)')
    .option('--page-size <bytes>', `page size, bytes (default ${DEFAULTS.pageSize})`)
    .option('--cache <size>', `page cache for deltas, the same on both ends (default ${DEFAULTS.cache})`)
    .option('--heartbeat <duration>', `heartbeat interval (default ${DEFAULTS.heartbeat})`)
    .option(
      '--tcp-rto-min <duration|off>',
      `lower bound on the connections' TCP retransmission timeout, Linux 6.15+ (default ${DEFAULTS.tcpRtoMin}; off: the kernel's 200 ms)`,
    )
    .option(
      '--tcp-congestion <name|system>',
      `the connections' TCP congestion control: cubic, bbr, reno… (default ${DEFAULTS.tcpCongestion}: the kernel's default)`,
    )
    .option(
      '--idle-timeout <duration>',
      `drop a connection that is silent this long (default ${DEFAULTS.idleTimeout})`,
    )
    .option(
      '--handshake-timeout <duration>',
      `connect + TLS handshake limit (default ${DEFAULTS.handshakeTimeout})`,
    )
    .option('--stats <file>', "append one JSON line per epoch (the sender's is a remus-plan measurement)")
    .option('--metrics <host:port>', 'serve /metrics (Prometheus) and /status (JSON) there')
    .addOption(
      new Option('--log-level <level>', `log level (default ${DEFAULTS.logLevel})`).choices([
        'fatal',
        'error',
        'warn',
        'info',
        'debug',
        'trace',
        'silent',
      ]),
    )
    .option(
      '--verify',
      'compute image digests at every epoch on both ends (a full read each time: checks, tests)',
    )
    .option('--name <name>', "a name for this daemon in logs, status and the peer's HELLO");
}

/** Options both senders (send, tunnel) take. */
function senderOptions(cmd: Command): Command {
  return cmd
    .option(
      '--window <n>',
      `epochs in flight, unacknowledged (default ${DEFAULTS.window}; 1 = stop and wait)`,
    )
    .option('--channels <n>', `parallel connections (default ${DEFAULTS.channels})`)
    .option('--chunk <size>', `chunk size before compression (default ${DEFAULTS.chunk})`)
    .option(
      '--copies-below <size|off>',
      `send an epoch on two channels at once while the unacknowledged data is at most this size: a loss on one channel then does not delay it (default ${DEFAULTS.copiesBelow})`,
    )
    .option(
      '--hedge-after <duration|off>',
      `while an epoch is not acknowledged, this long after its end and again every as long, what of it still waits unsent on a slowed connection goes again on one with nothing left to send (default ${DEFAULTS.hedgeAfter})`,
    )
    .option('--zstd-level <n|off>', `zstd level (default ${DEFAULTS.zstdLevel})`)
    .option(
      '--rate <rate|off>',
      'bandwidth cap, e.g. 100Mbit/s (default none; change it live with `remus-wan rate`)',
    )
    .option('--burst <size>', `burst allowed by the cap (default ${DEFAULTS.burst})`)
    .addOption(
      new Option(
        '--encoder <where>',
        'encode on the event loop with zstd on the thread pool (pool, the default: needs the native addon, else worker), on a worker thread (worker), or all on the event loop (inline)',
      )
        .choices(['worker', 'pool', 'inline'])
        .default(undefined, 'pool'),
    );
}

/** The command xl gives the tunnel after HOST: `xl migrate-receive -r [-e]`; whether `-e` is there. */
function xlReceiveCommand(words: readonly string[]): boolean {
  const [xl, verb, ...flags] = words;
  const ok =
    xl === 'xl' &&
    verb === 'migrate-receive' &&
    flags.includes('-r') &&
    flags.every((f) => f === '-r' || f === '-e') &&
    new Set(flags).size === flags.length;
  if (!ok) {
    throw new RwanError(
      'RWAN_ERR_USAGE',
      `remus-wan tunnel carries what xl remus runs: HOST xl migrate-receive -r [-e]; got ${JSON.stringify(words.join(' '))} (COLO and plain migration need a back channel the tunnel does not carry)`,
    );
  }
  return flags.includes('-e');
}

async function settingsFrom(o: Record<string, unknown>): Promise<ConfigFile> {
  let file: ConfigFile = {};
  if (typeof o.config === 'string') {
    let text: string;
    try {
      text = await readFile(o.config, 'utf8');
    } catch (err) {
      throw new RwanError('RWAN_ERR_IO', `config ${o.config}: ${(err as Error).message}`, { cause: err });
    }
    // loaded only here: see config-file.ts
    const { parseConfig } = await import('../daemon/config-file.js');
    file = parseConfig(text, o.config);
  }
  return merge(file, o);
}

async function fetchJson(url: string, init?: RequestInit): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(url, init);
  } catch (err) {
    throw new RwanError('RWAN_ERR_CONNECT', `${url}: ${(err as Error).message}`, { cause: err });
  }
  const body = (await res.json()) as { error?: { code?: string; message?: string } };
  if (!res.ok) {
    throw new RwanError('RWAN_ERR_PEER', `${url}: ${body.error?.message ?? res.statusText}`, {
      details: { status: res.status },
    });
  }
  return body;
}

function renderStatus(s: Record<string, unknown>): string {
  const lines: string[] = [];
  const fmt = (v: unknown): string =>
    typeof v === 'number'
      ? Number.isInteger(v)
        ? String(v)
        : v.toFixed(2)
      : v === null || v === undefined
        ? '—'
        : typeof v === 'object'
          ? JSON.stringify(v)
          : String(v);
  for (const [k, v] of Object.entries(s)) lines.push(`${k.padEnd(22)} ${fmt(v)}`);
  return `${lines.join('\n')}\n`;
}

/** The `remus-wan` program. */
export function createProgram(io: Io = processIo, exit: (code: number) => void = () => undefined): Command {
  const program = new Command('remus-wan')
    .version(packageVersion(), '-V, --version', 'print the version')
    .description('Remus-style replication over a WAN: the daemon pair (send, receive) and its tools')
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .enablePositionalOptions() // the tunnel passes what follows HOST through (xl's -r, -e)
    .showHelpAfterError();

  const send = common(
    program
      .command('send')
      .description(
        'on the primary: replicate a file (guest RAM, disk image, state file) to the backup epoch by epoch',
      ),
  )
    .option('--connect <host:port>', `the receiver (port default ${DEFAULTS.port})`)
    .option('--image <file>', 'the file or block device to replicate')
    .option(
      '--dirty-log <file>',
      'dirty pages from this log (docs/dirty-log.md) instead of hashing every page',
    )
    .option(
      '--pause-pid <pid>',
      'pause this process (SIGSTOP/SIGCONT) around each capture: a consistent epoch',
    )
    .option('--epoch <duration>', `capture interval (default ${DEFAULTS.epoch})`)
    .option('--max-epochs <n>', 'stop after this many acknowledged epochs')
    .addOption(
      new Option(
        '--proxy <listen=service>',
        "output commit: clients connect to LISTEN; the service's answers reach them only once the backup has the state they came from (repeatable)",
      ).argParser((v: string, prev: string[] = []) => [...prev, v]),
    )
    .option(
      '--proxy-buffer <size>',
      'bytes a proxy holds before it stops reading from the service (default 16MiB)',
    );
  senderOptions(send)
    .addHelpText(
      'after',
      `
Example:
  remus-wan send --connect backup.example.net:7800 --image /var/lib/app/state.img --pause-pid 4242 \\
    --tls-ca pki/ca.pem --tls-cert pki/primary.pem --tls-key pki/primary.key --peer-name backup \\
    --epoch 100ms --rate 100Mbit/s --stats /var/log/remus-wan/epochs.jsonl --metrics 127.0.0.1:9464`,
    )
    .action(async (o: Record<string, unknown>) => {
      exit(await runSend(sendSettings(await settingsFrom(o))));
    });

  common(
    program
      .command('receive')
      .description('on the backup: accept the sender, keep a consistent replica, report primary loss'),
  )
    .option('--listen <host:port>', `where to listen (default 0.0.0.0:${DEFAULTS.port})`)
    .option('--store <dir>', 'replica store directory (replica.img, journal, state)')
    .option(
      '--dead-time <duration>',
      `silence after which the primary is declared lost (default ${DEFAULTS.deadTime})`,
    )
    .option(
      '--staging <size>',
      `compressed epoch bytes kept in memory before spilling to disk (default ${DEFAULTS.staging})`,
    )
    .option(
      '--checkpoint <size>',
      `journal bytes after which the replica is checkpointed: less to replay after a crash, more checkpoints (default ${DEFAULTS.checkpoint})`,
    )
    .option(
      '--on-primary-lost <command>',
      'run this (sh -c) on primary-lost and primary-back; env REMUS_WAN_EVENT, _LAST_EPOCH, _SESSION, _STORE, _REPLICA',
    )
    .addHelpText(
      'after',
      `
Example:
  remus-wan receive --listen 0.0.0.0:7800 --store /var/lib/remus-wan/app \\
    --tls-ca pki/ca.pem --tls-cert pki/backup.pem --tls-key pki/backup.key --peer-name primary \\
    --dead-time 3s --on-primary-lost /usr/local/sbin/promote --metrics 127.0.0.1:9465`,
    )
    .action(async (o: Record<string, unknown>) => {
      exit(await runReceive(receiveSettings(await settingsFrom(o))));
    });

  program
    .command('status')
    .description(
      'what a running daemon is doing: role, last acknowledged epoch, lag, rates, compression, peers',
    )
    .option('--url <url>', "the daemon's --metrics address", 'http://127.0.0.1:9464')
    .option('--json', 'print the status as JSON')
    .action(async (o: { url: string; json?: boolean }) => {
      const s = (await fetchJson(new URL('/status', o.url).toString())) as Record<string, unknown>;
      io.out(o.json ? `${JSON.stringify(s, null, 2)}\n` : renderStatus(s));
    });

  program
    .command('rate')
    .description("change a running sender's bandwidth cap")
    .option('--url <url>', "the sender's --metrics address", 'http://127.0.0.1:9464')
    .option('--rate <rate>', 'new cap, e.g. 50Mbit/s')
    .option('--burst <size>', 'new burst (default: keep)')
    .option('--off', 'lift the cap')
    .option('--json', 'print the answer as JSON')
    .action(async (o: { url: string; rate?: string; burst?: string; off?: boolean; json?: boolean }) => {
      if ((o.rate === undefined) === (o.off !== true))
        throw new RwanError('RWAN_ERR_USAGE', 'give --rate RATE or --off');
      const r = await fetchJson(new URL('/rate', o.url).toString(), {
        method: 'POST',
        body: JSON.stringify(
          o.off ? { rate: null } : { rate: o.rate, ...(o.burst ? { burst: o.burst } : {}) },
        ),
      });
      io.out(`${JSON.stringify(r, null, o.json ? 2 : 0)}\n`);
    });

  senderOptions(
    common(
      program
        .command('tunnel')
        .description(
          'on the primary, run by xl: xl remus -s "remus-wan tunnel [options]" DOMAIN HOST carries the stream to remus-wan xen-receive on HOST',
        ),
    ),
  )
    .argument('<host>', 'the backup (xl passes it): HOST or HOST:PORT')
    .argument('<command...>', 'what xl would run there: xl migrate-receive -r [-e]')
    .option('--port <port>', `the backup's port when HOST has none (default ${DEFAULTS.port})`)
    .addOption(
      new Option(
        '--gate <on|off>',
        "hold each checkpoint's last write (xl then keeps the guest's output) until the backup has the checkpoint but its device-model tail (default on; docs/xen-stream.md)",
      ).choices(['on', 'off']),
    )
    .passThroughOptions()
    .addHelpText(
      'after',
      `
Example (on the primary; the backup runs remus-wan xen-receive):
  xl remus -i 100 -s "remus-wan tunnel --tls-ca /etc/remus-wan/ca.pem --tls-cert /etc/remus-wan/primary.pem \\
    --tls-key /etc/remus-wan/primary.key --peer-name backup --rate 200Mbit/s" web1 backup.example.net
Standard output is xl's: only the receiver's banner goes there; logs go to standard error.`,
    )
    .action(async (host: string, words: string[], o: Record<string, unknown>) => {
      const detach = xlReceiveCommand(words);
      const { runTunnel } = await import('../daemon/xen.js');
      exit(await runTunnel(tunnelSettings(await settingsFrom(o), host, detach)));
    });

  common(
    program
      .command('xen-receive')
      .description(
        'on the backup: receive a remus-wan tunnel and feed the stream to xl migrate-receive -r, byte for byte',
      ),
  )
    .option('--listen <host:port>', `where to listen (default 0.0.0.0:${DEFAULTS.port})`)
    .option(
      '--dead-time <duration>',
      `silence after which the primary is declared lost (default ${DEFAULTS.deadTime}); the stream ends only on POST /promote`,
    )
    .option(
      '--receive-command <command>',
      `run by sh -c "exec COMMAND [-e]" for the stream (default ${DEFAULTS.receiveCommand})`,
    )
    .addHelpText(
      'after',
      `
Example:
  remus-wan xen-receive --listen 0.0.0.0:7800 --tls-ca /etc/remus-wan/ca.pem \\
    --tls-cert /etc/remus-wan/backup.pem --tls-key /etc/remus-wan/backup.key --peer-name primary \\
    --dead-time 3s --metrics 127.0.0.1:9465`,
    )
    .action(async (o: Record<string, unknown>) => {
      const { runXenReceive } = await import('../daemon/xen.js');
      exit(await runXenReceive(xenReceiveSettings(await settingsFrom(o))));
    });

  registerCerts(program, io);
  return program;
}

/** Run the CLI; returns the exit status (a daemon's own once it stopped). */
export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  let code = 0;
  const program = createProgram(io, (c) => {
    code = c;
  }).exitOverride();
  return runProgram('remus-wan', program, argv, io, () => code);
}

// daemons leave nothing running after they stop; a stuck handle must not keep the process alive
runIfEntryPoint(import.meta.url, (argv) => main(argv), { exitAfterMs: 2000 });
