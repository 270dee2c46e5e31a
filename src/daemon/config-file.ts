/**
 * The daemon's config file: JSON checked with zod, unknown keys refused (docs/daemon.md). Apart from
 * config.ts so that zod (about 3 MiB of heap once loaded) is loaded only by a daemon given a file.
 * Pure: text in, values out.
 */
import { z } from 'zod';
import { RwanError } from '../errors.js';

/** Config file keys; each has a flag of the same name in kebab case. */
const fileSchema = z
  .object({
    connect: z.string(),
    listen: z.string(),
    image: z.string(),
    dirtyLog: z.string(),
    pausePid: z.union([z.number().int().positive(), z.string()]),
    store: z.string(),
    tlsCa: z.string(),
    tlsCert: z.string(),
    tlsKey: z.string(),
    peerName: z.union([z.string(), z.array(z.string())]),
    pskIdentity: z.string(),
    pskKeyFile: z.string(),
    insecure: z.boolean(),
    pageSize: z.union([z.number(), z.string()]),
    epoch: z.string(),
    window: z.union([z.number(), z.string()]),
    channels: z.union([z.number(), z.string()]),
    cache: z.string(),
    chunk: z.string(),
    copiesBelow: z.string(),
    hedgeAfter: z.string(),
    zstdLevel: z.union([z.number(), z.string()]),
    rate: z.string(),
    burst: z.string(),
    heartbeat: z.string(),
    tcpRtoMin: z.string(),
    tcpCongestion: z.string(),
    idleTimeout: z.string(),
    handshakeTimeout: z.string(),
    deadTime: z.string(),
    staging: z.string(),
    checkpoint: z.string(),
    stats: z.string(),
    metrics: z.string(),
    onPrimaryLost: z.string(),
    receiveCommand: z.string(),
    gate: z.enum(['on', 'off']),
    proxy: z.union([z.string(), z.array(z.string())]),
    proxyBuffer: z.string(),
    port: z.union([z.number().int(), z.string()]),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
    verify: z.boolean(),
    maxEpochs: z.union([z.number(), z.string()]),
    encoder: z.enum(['worker', 'pool', 'inline']),
    name: z.string(),
  })
  .partial()
  .strict();

/** What a config file may hold (every field optional). */
export type ConfigFile = z.infer<typeof fileSchema>;

/** Parse a config file's text. */
export function parseConfig(text: string, source: string): ConfigFile {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new RwanError('RWAN_ERR_INVALID_INPUT', `${source}: not JSON: ${(err as Error).message}`, {
      details: { source },
    });
  }
  const r = fileSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    const where = issue?.path.join('.') || '(top level)';
    throw new RwanError('RWAN_ERR_INVALID_INPUT', `${source}: ${where}: ${issue?.message ?? 'invalid'}`, {
      details: { source, path: issue?.path, issues: r.error.issues.length },
    });
  }
  return r.data;
}
