/**
 * The daemon's settings: one JSON config file (docs/daemon.md), every field also a command-line flag;
 * a flag given on the command line wins over the file. Pure: text and flags in, settings out.
 *
 *   file (JSON, zod-checked, unknown keys refused) ─┐  config-file.ts
 *                                                   ├─► merge (flags win) ─► units parsed ─► Settings
 *   flags (commander, strings as typed)  ───────────┘
 */

import { RwanError } from '../errors.js';
import { parseBytes, parseCount, parseDuration, parseRate } from '../units.js';
import type { ConfigFile } from './config-file.js';

export type { ConfigFile } from './config-file.js';

/** Security settings, before the files are read. */
export type SecuritySettings =
  | { kind: 'tls'; ca: string; cert: string; key: string; peerNames?: string[] }
  | { kind: 'psk'; identity: string; keyFile: string }
  | { kind: 'insecure' };

/** Settings shared by both roles. */
export interface CommonSettings {
  security: SecuritySettings;
  pageSize: number;
  cacheBytes: number;
  heartbeatMs: number;
  /** The lower bound on every connection's TCP retransmission timeout, µs (null: the kernel's, 200 ms). */
  tcpRtoMinUs: number | null;
  /** Every connection's TCP congestion control (null: the system's default). */
  tcpCongestion: string | null;
  idleTimeoutMs: number;
  handshakeTimeoutMs: number;
  statsFile?: string;
  metrics?: { host: string; port: number };
  logLevel: ConfigFile['logLevel'] & string;
  verify: boolean;
  name: string;
}

/** `remus-wan send`. */
export interface SendSettings extends CommonSettings {
  connect: { host: string; port: number };
  image: string;
  dirtyLog?: string;
  pausePid?: number;
  epochMs: number;
  window: number;
  channels: number;
  chunkBytes: number;
  /** Copy an epoch on two channels while the unacknowledged bytes are at most this many (0: off). */
  copiesBelowBytes: number;
  /** Resend an unacknowledged epoch's frames still waiting on a slowed channel after this long, ms (0: off). */
  hedgeAfterMs: number;
  zstdLevel: number | null;
  rate: { bytesPerSecond: number; burstBytes: number } | null;
  maxEpochs?: number;
  /**
   * Encode on the event loop with zstd on the thread pool (`pool`, the default: the native addon; a
   * worker thread without it), on a worker thread, or all on the event loop.
   */
  encoder: 'worker' | 'pool' | 'inline';
  /** Output-commit proxies (`--proxy LISTEN=SERVICE`): the service's answers wait for the backup. */
  proxies?: Array<{ listen: { host: string; port: number }; service: { host: string; port: number } }>;
  /** Bytes a proxy holds before it stops reading from the service. */
  proxyBufferBytes?: number;
}

/** What both senders (send, tunnel) take: the transport, the window, the codec, the cap. */
export type SenderCommonSettings = Omit<
  SendSettings,
  'image' | 'dirtyLog' | 'pausePid' | 'epochMs' | 'maxEpochs' | 'proxies' | 'proxyBufferBytes'
>;

/** `remus-wan tunnel`: what `send` takes but the image, its capture and its limit. */
export interface TunnelSettings extends SenderCommonSettings {
  /** xl's `-e`: the backup's receive command does not wait for the domain's death. */
  detach: boolean;
  /** Hold xl's checkpoint writes until the backup acknowledges (docs/xen-stream.md). */
  gate: boolean;
}

/** `remus-wan xen-receive`. */
export interface XenReceiveSettings extends CommonSettings {
  listen: { host: string; port: number };
  deadTimeMs: number;
  /** Run by `sh -c "exec COMMAND [-e]"`. */
  receiveCommand: string;
}

/** `remus-wan receive`. */
export interface ReceiveSettings extends CommonSettings {
  listen: { host: string; port: number };
  store: string;
  deadTimeMs: number;
  stagingBytes: number;
  checkpointBytes: number;
  onPrimaryLost?: string;
}

/** Defaults (docs/daemon.md lists them). */
export const DEFAULTS = {
  pageSize: 4096,
  epoch: '100ms',
  window: 4,
  channels: 2,
  cache: '64MiB',
  chunk: '512KiB',
  copiesBelow: '256KiB',
  hedgeAfter: '10ms',
  zstdLevel: 1,
  burst: '4MiB',
  heartbeat: '200ms',
  tcpRtoMin: '20ms',
  tcpCongestion: 'system',
  idleTimeout: '5s',
  handshakeTimeout: '10s',
  deadTime: '3s',
  staging: '64MiB',
  checkpoint: '256MiB',
  logLevel: 'info',
  port: 7800,
  receiveCommand: 'xl migrate-receive -r',
} as const;

/** `host:port`, `[v6]:port` or `port` alone (then `fallbackHost`). */
export function parseAddress(
  text: string,
  what: string,
  fallbackHost: string,
): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+))?:?(\d+)?$/.exec(text.trim());
  const host = m?.[1] ?? m?.[2];
  const portText = m?.[3];
  if (!m || (host === undefined && portText === undefined)) {
    throw new RwanError('RWAN_ERR_INVALID_VALUE', `${what}: '${text}' is not host:port`, {
      details: { what },
    });
  }
  if (host !== undefined && portText === undefined && /^\d+$/.test(host)) {
    return { host: fallbackHost, port: checkPort(Number(host), what) };
  }
  return {
    host: host ?? fallbackHost,
    port: checkPort(portText === undefined ? DEFAULTS.port : Number(portText), what),
  };
}

function checkPort(port: number, what: string): number {
  if (!(Number.isInteger(port) && port >= 0 && port <= 65535)) {
    throw new RwanError('RWAN_ERR_INVALID_VALUE', `${what}: port ${port} out of 0..65535`, {
      details: { what },
    });
  }
  return port;
}

type Merged = ConfigFile;

/** File values, then flags on top (commander gives flags as camelCase keys). */
export function merge(file: ConfigFile, flags: Record<string, unknown>): Merged {
  const out: Record<string, unknown> = { ...file };
  for (const [k, v] of Object.entries(flags)) if (v !== undefined && k !== 'config') out[k] = v;
  return out as Merged;
}

const num = (v: number | string | undefined, what: string): number | undefined =>
  v === undefined ? undefined : typeof v === 'number' ? v : parseCount(v, { what });

function security(m: Merged): SecuritySettings {
  const tls = m.tlsCa !== undefined || m.tlsCert !== undefined || m.tlsKey !== undefined;
  const psk = m.pskIdentity !== undefined || m.pskKeyFile !== undefined;
  const chosen = [tls, psk, m.insecure === true].filter(Boolean).length;
  if (chosen !== 1) {
    throw new RwanError(
      'RWAN_ERR_USAGE',
      chosen === 0
        ? 'no transport security: give --tls-ca, --tls-cert and --tls-key (or --psk-identity and --psk-key-file, or --insecure for plaintext)'
        : 'choose one of TLS (--tls-*), PSK (--psk-*) or --insecure',
    );
  }
  if (tls) {
    if (!m.tlsCa || !m.tlsCert || !m.tlsKey) {
      throw new RwanError('RWAN_ERR_USAGE', 'TLS needs all of --tls-ca, --tls-cert and --tls-key');
    }
    const names = m.peerName === undefined ? [] : Array.isArray(m.peerName) ? m.peerName : [m.peerName];
    return {
      kind: 'tls',
      ca: m.tlsCa,
      cert: m.tlsCert,
      key: m.tlsKey,
      ...(names.length > 0 ? { peerNames: names } : {}),
    };
  }
  if (psk) {
    if (!m.pskIdentity || !m.pskKeyFile) {
      throw new RwanError('RWAN_ERR_USAGE', 'PSK needs both --psk-identity and --psk-key-file');
    }
    return { kind: 'psk', identity: m.pskIdentity, keyFile: m.pskKeyFile };
  }
  return { kind: 'insecure' };
}

/** `--tcp-rto-min`: `off`, or a duration from 1 ms to 1 s, in µs. */
function rtoMin(text: string): number | null {
  if (text.trim() === 'off') return null;
  const us = Math.round(1e6 * parseDuration(text, { what: '--tcp-rto-min' }));
  if (us < 1000 || us > 1_000_000) {
    throw new RwanError('RWAN_ERR_INVALID_VALUE', `--tcp-rto-min: '${text}' is not off or 1ms..1s`, {
      details: { what: '--tcp-rto-min' },
    });
  }
  return us;
}

/** `--tcp-congestion`: `system`, or the name of a congestion control (letters, digits, _ and -). */
function congestion(text: string): string | null {
  const name = text.trim();
  if (name === 'system') return null;
  if (!/^[A-Za-z0-9_-]{1,15}$/.test(name)) {
    throw new RwanError('RWAN_ERR_INVALID_VALUE', `--tcp-congestion: '${text}' is not system or a name`, {
      details: { what: '--tcp-congestion' },
    });
  }
  return name;
}

function common(m: Merged): CommonSettings {
  const pageSize = num(m.pageSize, '--page-size') ?? DEFAULTS.pageSize;
  return {
    security: security(m),
    pageSize,
    cacheBytes: parseBytes(m.cache ?? DEFAULTS.cache, { what: '--cache' }),
    heartbeatMs: 1000 * parseDuration(m.heartbeat ?? DEFAULTS.heartbeat, { what: '--heartbeat' }),
    tcpRtoMinUs: rtoMin(m.tcpRtoMin ?? DEFAULTS.tcpRtoMin),
    tcpCongestion: congestion(m.tcpCongestion ?? DEFAULTS.tcpCongestion),
    idleTimeoutMs: 1000 * parseDuration(m.idleTimeout ?? DEFAULTS.idleTimeout, { what: '--idle-timeout' }),
    handshakeTimeoutMs:
      1000 * parseDuration(m.handshakeTimeout ?? DEFAULTS.handshakeTimeout, { what: '--handshake-timeout' }),
    ...(m.stats === undefined ? {} : { statsFile: m.stats }),
    ...(m.metrics === undefined ? {} : { metrics: parseAddress(m.metrics, '--metrics', '127.0.0.1') }),
    logLevel: m.logLevel ?? DEFAULTS.logLevel,
    verify: m.verify === true,
    name: m.name ?? '',
  };
}

function required<T>(v: T | undefined, flag: string): T {
  if (v === undefined || v === '') throw new RwanError('RWAN_ERR_USAGE', `${flag} is required`);
  return v;
}

function senderCommon(m: Merged, connect: string): SenderCommonSettings {
  const rate = m.rate === undefined || m.rate === 'off' ? null : parseRate(m.rate, { what: '--rate' });
  const level = m.zstdLevel === 'off' ? null : (num(m.zstdLevel, '--zstd-level') ?? DEFAULTS.zstdLevel);
  return {
    ...common(m),
    connect: parseAddress(connect, '--connect', '127.0.0.1'),
    window: num(m.window, '--window') ?? DEFAULTS.window,
    channels: num(m.channels, '--channels') ?? DEFAULTS.channels,
    chunkBytes: parseBytes(m.chunk ?? DEFAULTS.chunk, { what: '--chunk' }),
    copiesBelowBytes:
      m.copiesBelow === 'off'
        ? 0
        : parseBytes(m.copiesBelow ?? DEFAULTS.copiesBelow, { what: '--copies-below' }),
    hedgeAfterMs:
      m.hedgeAfter === 'off'
        ? 0
        : 1000 * parseDuration(m.hedgeAfter ?? DEFAULTS.hedgeAfter, { what: '--hedge-after' }),
    zstdLevel: level,
    rate:
      rate === null
        ? null
        : { bytesPerSecond: rate, burstBytes: parseBytes(m.burst ?? DEFAULTS.burst, { what: '--burst' }) },
    encoder: m.encoder ?? 'pool',
  };
}

/** Settings of `remus-wan send`. */
export function sendSettings(m: Merged): SendSettings {
  const pausePid = num(m.pausePid, '--pause-pid');
  const maxEpochs = num(m.maxEpochs, '--max-epochs');
  return {
    ...senderCommon(m, required(m.connect, '--connect')),
    image: required(m.image, '--image'),
    ...(m.dirtyLog === undefined ? {} : { dirtyLog: m.dirtyLog }),
    ...(pausePid === undefined ? {} : { pausePid }),
    epochMs: 1000 * parseDuration(m.epoch ?? DEFAULTS.epoch, { what: '--epoch' }),
    ...(maxEpochs === undefined ? {} : { maxEpochs }),
    ...(m.proxy === undefined
      ? {}
      : {
          proxies: (Array.isArray(m.proxy) ? m.proxy : [m.proxy]).map((p) => {
            const [listen, service] = p.split('=');
            if (!listen || !service)
              throw new RwanError(
                'RWAN_ERR_INVALID_VALUE',
                `--proxy ${p}: expected LISTEN=SERVICE (host:port=host:port)`,
              );
            return {
              listen: parseAddress(listen, '--proxy', '127.0.0.1'),
              service: parseAddress(service, '--proxy', '127.0.0.1'),
            };
          }),
          proxyBufferBytes: parseBytes(m.proxyBuffer ?? '16MiB', { what: '--proxy-buffer' }),
        }),
  };
}

/**
 * Settings of `remus-wan tunnel`: `host` is the HOST xl passes (the backup; `host:port`, the port
 * `--port` or 7800 when it has none), `detach` whether xl asked for `-e`.
 */
export function tunnelSettings(m: Merged, host: string, detach: boolean): TunnelSettings {
  const port = num(m.port, '--port') ?? DEFAULTS.port;
  const connect = /^\[.*\]:\d+$|^[^:]+:\d+$/.test(host)
    ? host
    : `${host.includes(':') ? `[${host}]` : host}:${port}`;
  const gate = m.gate ?? 'on';
  if (gate !== 'on' && gate !== 'off')
    throw new RwanError('RWAN_ERR_INVALID_VALUE', `--gate ${gate}: on or off`);
  return { ...senderCommon(m, connect), detach, gate: gate === 'on' };
}

/** Settings of `remus-wan xen-receive`. */
export function xenReceiveSettings(m: Merged): XenReceiveSettings {
  return {
    ...common(m),
    listen: parseAddress(m.listen ?? `0.0.0.0:${DEFAULTS.port}`, '--listen', '0.0.0.0'),
    deadTimeMs: 1000 * parseDuration(m.deadTime ?? DEFAULTS.deadTime, { what: '--dead-time' }),
    receiveCommand: m.receiveCommand ?? DEFAULTS.receiveCommand,
  };
}

/** Settings of `remus-wan receive`. */
export function receiveSettings(m: Merged): ReceiveSettings {
  const c = common(m);
  return {
    ...c,
    listen: parseAddress(m.listen ?? `0.0.0.0:${DEFAULTS.port}`, '--listen', '0.0.0.0'),
    store: required(m.store, '--store'),
    deadTimeMs: 1000 * parseDuration(m.deadTime ?? DEFAULTS.deadTime, { what: '--dead-time' }),
    stagingBytes: parseBytes(m.staging ?? DEFAULTS.staging, { what: '--staging' }),
    checkpointBytes: parseBytes(m.checkpoint ?? DEFAULTS.checkpoint, { what: '--checkpoint' }),
    ...(m.onPrimaryLost === undefined ? {} : { onPrimaryLost: m.onPrimaryLost }),
  };
}
