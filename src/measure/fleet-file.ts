/**
 * The fleet file: guests, their measurements, the link, the policy — in one JSON document whose
 * quantities are written the way operators write them ("100Mbit/s", "25ms", "4KiB"). Validated with
 * zod; the same schema is published as JSON Schema (`schema/fleet.schema.json`, `remus-plan schema`).
 * Command-line options build the same shape, so both go through one conversion. Pure.
 */
import { z } from 'zod';
import { RwanError } from '../errors.js';
import { CongestionControls, Models, Modes } from '../planner/types.js';

const quantity = (what: string, example: string) =>
  z.union([z.string(), z.number()]).describe(`${what}, with a unit (e.g. "${example}")`);

/** One measurement given inline. Exactly one of `rate`, `pages`, `samples`. */
export const MeasurementEntry = z
  .object({
    window: z.string().describe('measuring window, e.g. "100ms"'),
    rate: z.string().optional().describe('dirty rate over the window, e.g. "12MiB/s"'),
    pages: z.number().nonnegative().optional().describe('unique pages dirtied in the window'),
    samples: z
      .array(z.number().nonnegative())
      .min(1)
      .optional()
      .describe('several measurements of pages in the window'),
    mode: z.string().optional().describe('how it was measured: page-sampling, dirty-bitmap, dirty-ring, …'),
  })
  .strict();

export const GuestEntry = z
  .object({
    name: z.string().min(1).max(200),
    pageSize: quantity('page size', '4KiB').optional(),
    memory: quantity('guest RAM (caps D(T))', '8GiB').optional(),
    measurements: z.array(MeasurementEntry).optional(),
    files: z
      .array(z.string())
      .optional()
      .describe(
        'measurement files, relative to the fleet file: QEMU replies, virsh domstats, traces, remus-wan stats, measure qmp output',
      ),
    diskWrite: quantity('disk write rate mirrored to the backup', '5MB/s').optional(),
    compression: z
      .union([z.number().positive(), z.string()])
      .optional()
      .describe('memory wire/raw ratio (0.3, "30%", "4:1")'),
    diskCompression: z.union([z.number().positive(), z.string()]).optional().describe('disk wire/raw ratio'),
    samplePages: z.string().optional().describe('raw page dump whose zstd ratio gives the compression'),
    deviceState: quantity('device state per checkpoint', '64KiB').optional(),
    model: z.enum(Models).optional(),
    priority: z.number().int().optional().describe('lower is admitted to the shared link first'),
  })
  .strict();

export const LinkEntry = z
  .object({
    bandwidth: quantity('link capacity for replication', '100Mbit/s').optional(),
    rtt: quantity('round-trip time', '25ms').optional(),
    distance: quantity('fibre route length (RTT ≈ 1 ms per 100 km)', '1200km').optional(),
    loss: z.union([z.string(), z.number()]).optional().describe('packet loss, e.g. "0.1%"'),
    mss: z.number().int().positive().optional().describe('TCP payload bytes per segment'),
    channels: z.number().int().positive().optional().describe('parallel TCP channels'),
    tcpWindow: quantity('largest TCP window', '4MiB').optional(),
    cc: z.enum(CongestionControls).optional(),
  })
  .strict();

export const PolicyEntry = z
  .object({
    mode: z.enum(Modes).optional(),
    epoch: z.string().optional().describe('"100ms", "50ms,100ms,200ms" or a sweep "10ms..1s[:N]"'),
    latencyBudget: z.string().optional().describe('added-latency budget, e.g. "150ms"'),
    budgetStat: z.enum(['mean', 'max']).optional(),
    headroom: z
      .union([z.string(), z.number()])
      .optional()
      .describe('share of the link kept free, e.g. "20%"'),
    pause: z.string().optional().describe('pause model BASE,PER_PAGE, e.g. "0.6ms,3.7us"'),
    framing: z.number().nonnegative().optional().describe('per-page framing bytes on the wire'),
    percentile: z.number().gt(0).max(100).optional(),
    inFlight: z.number().int().positive().optional().describe('epochs in flight (pipelined mode)'),
    copiesBelow: z
      .string()
      .optional()
      .describe(
        'checkpoints up to this size go on two channels at once (pipelined mode), e.g. "256KiB"; "off"',
      ),
    maxPause: z
      .union([z.string(), z.number()])
      .optional()
      .describe('largest share of time the guest may be paused, e.g. "10%"'),
  })
  .strict();

export const FleetFile = z
  .object({
    $schema: z.string().optional(),
    link: LinkEntry.optional(),
    policy: PolicyEntry.optional(),
    guests: z.array(GuestEntry).min(1),
  })
  .strict();

export type FleetFileData = z.infer<typeof FleetFile>;
export type GuestEntryData = z.infer<typeof GuestEntry>;
export type LinkEntryData = z.infer<typeof LinkEntry>;
export type PolicyEntryData = z.infer<typeof PolicyEntry>;

/** The fleet file's JSON Schema. */
export function fleetJsonSchema(): Record<string, unknown> {
  return {
    ...z.toJSONSchema(FleetFile),
    $id: 'https://remus-wan.dev/schema/fleet.schema.json',
    title: 'remus-plan fleet file',
  };
}

/** True when a parsed JSON value looks like a fleet file (has a `guests` array). */
export function looksLikeFleet(value: unknown): boolean {
  return typeof value === 'object' && value !== null && Array.isArray((value as { guests?: unknown }).guests);
}

/** Validate a fleet document; every problem is reported with its JSON path. */
export function parseFleet(value: unknown, source: string): FleetFileData {
  const result = FleetFile.safeParse(value);
  if (result.success) return result.data;
  const problems = result.error.issues.map(
    (i) => `${i.path.length ? i.path.join('.') : '(top)'}: ${i.message}`,
  );
  const missing = result.error.issues.some(
    (i) => i.code === 'invalid_type' && i.message.includes('received undefined'),
  );
  throw new RwanError(
    missing ? 'RWAN_ERR_MISSING_FIELD' : 'RWAN_ERR_INVALID_INPUT',
    `${source}: ${problems.join('; ')}`,
    {
      details: { source, problems },
    },
  );
}
