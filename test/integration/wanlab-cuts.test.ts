/**
 * Link cuts on the WAN lab (tools/wanlab/cuts.mjs): the daemon pair across an emulated 25 ms,
 * 100 Mbit/s, 0.1 % loss WAN, the link cut for 0.5–5 s inside the 8 s dead time. No loss declared,
 * one full copy, every acknowledged epoch committed once, in order, byte for byte. (The tool runs 50
 * cuts by default; four here, for time.)
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { assertFreshBuild } from './daemon-harness.js';

const tool = join(import.meta.dirname, '..', '..', 'tools', 'wanlab', 'cuts.mjs');

describe('link cuts inside the dead time, on the WAN lab', () => {
  it('no failover, no full resync, no lost epoch', () => {
    assertFreshBuild();
    const r = spawnSync(process.execPath, [tool, '--cuts', '4', '--seed', '7', '--json'], {
      encoding: 'utf8',
      timeout: 300_000,
    });
    const verdict = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}');
    console.log(`wanlab cuts: ${JSON.stringify(verdict)}`);
    expect(r.status, r.stderr).toBe(0);
    expect(verdict).toMatchObject({
      cuts: 4,
      primaryLost: 0,
      fullCopies: 1,
      acknowledgedInOrder: true,
      committedInOrder: true,
      digestMismatches: 0,
      everyAcknowledgedCommitted: true,
      ok: true,
    });
    expect(verdict.epochsAcknowledged).toBeGreaterThan(20);
  }, 300_000);
});
