/**
 * `remus-plan measure xen-stream FILE`: per-checkpoint pages and bytes of a captured stream, as rows
 * the planner reads back with --input (dirty pages per interval, and the state besides memory).
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/plan.js';
import type { XenCheckpointRow } from '../../src/measure/xen-stream.js';
import { type GenerateOptions, generateXenStream } from '../../src/xen/generate.js';
import { writeXenStream } from '../../src/xen/writer.js';

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { out: (t) => (out += t), err: (t) => (err += t) });
  return { code, out, err };
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'remus-xen-measure-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const o: GenerateOptions = { guest: 'hvm', pages: 3000, checkpoints: 12, dirtyPages: 250, seed: 11 };

describe('remus-plan measure xen-stream', () => {
  it('one row per checkpoint: the first pass (full), then each checkpoint’s pages and bytes, every byte counted', async () => {
    const bytes = writeXenStream(generateXenStream(o));
    const file = join(dir, 'hvm.stream');
    await writeFile(file, bytes);
    const rowsFile = join(dir, 'hvm.ndjson');
    const r = await run('measure', 'xen-stream', file, '--interval', '100ms', '--out', rowsFile);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(
      /13 checkpoints \(the first pass and 12 more\); the stream stops after its last checkpoint/,
    );
    expect(r.err).toMatch(/dirty pages per checkpoint: p50 250, p99 250/);
    const rows = (await readFile(rowsFile, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as XenCheckpointRow);
    expect(rows).toHaveLength(13);
    expect(rows[0]).toMatchObject({ checkpoint: 0, full: true, dirtyPages: 3000 - 32, emptyPfns: 32 }); // the VGA hole
    for (const row of rows.slice(1)) {
      expect(row).toMatchObject({
        full: false,
        epochMs: 100,
        dirtyPages: 250,
        emptyPfns: 0,
        pageBytes: 250 * 4096,
      });
      // vCPU and device state, the emulator records, the optional records, the pfn lists
      expect(row.deviceStateBytes).toBeGreaterThan(6000);
      expect(row.streamBytes).toBe(row.pageBytes + row.deviceStateBytes);
    }
    expect(rows.reduce((s, x) => s + x.streamBytes, 0)).toBe(bytes.length);

    // the planner reads the rows: 250 pages per 100 ms, and the state besides memory each checkpoint
    const plan = await run('--input', rowsFile, '--bandwidth', '1Gbit/s', '--rtt', '10ms', '--json');
    expect(plan.code, plan.err).toBe(0);
    const g = JSON.parse(plan.out).guests[0] as {
      dirtyModel: { windowsMs: number[] };
      plans: Array<{ epochMs: number; dirtyPages: number; checkpointBytes: number }>;
    };
    expect(g.dirtyModel.windowsMs).toEqual([100]);
    const at100 = g.plans.find((p) => p.epochMs === 100);
    // as 250 pages per 100 ms given by hand, plus the median state besides memory (which also
    // lengthens the pause a little, and so the pages of the effective epoch)
    const given = await run(
      '--dirty-pages',
      '250@100ms',
      '--bandwidth',
      '1Gbit/s',
      '--rtt',
      '10ms',
      '--json',
    );
    const byHand = (JSON.parse(given.out).guests[0] as typeof g).plans.find((p) => p.epochMs === 100);
    const state = [...rows.slice(1).map((x) => x.deviceStateBytes)].sort((a, b) => a - b)[6] as number;
    const extra = (at100?.checkpointBytes ?? 0) - (byHand?.checkpointBytes ?? 0);
    expect(extra).toBeGreaterThanOrEqual(state);
    expect(extra).toBeLessThan(state + 4 * 4096);
  });

  it('a stream cut inside a checkpoint: that checkpoint is left out; no complete checkpoint, or a broken stream, is an error', async () => {
    const bytes = writeXenStream(generateXenStream({ ...o, checkpoints: 3 }));
    const cut = join(dir, 'cut.stream');
    await writeFile(cut, bytes.subarray(0, bytes.length - 100));
    const r = await run('measure', 'xen-stream', cut, '--interval', '200ms');
    expect(r.code, r.err).toBe(0);
    expect(r.out.trim().split('\n')).toHaveLength(3);
    expect(r.err).toMatch(/the stream ends inside a record .*: that checkpoint is left out/);

    await writeFile(cut, bytes.subarray(0, 100_000));
    const none = await run('measure', 'xen-stream', cut, '--quiet');
    expect(none.code).toBe(3);
    expect(none.err).toMatch(/RWAN_ERR_MISSING_FIELD: .*no complete checkpoint/);

    const broken = Buffer.from(bytes);
    broken.write('XenF', 0);
    await writeFile(cut, broken);
    const bad = await run('measure', 'xen-stream', cut, '--quiet');
    expect(bad.code).toBe(12);
    expect(bad.err).toMatch(/RWAN_ERR_XEN_HEADER/);
    expect(bad.out).toBe('');
  });
});
