/**
 * The output-commit proof (tools/commit/proof.mjs): kill -9 of the primary at random moments; every
 * write whose acknowledgement a client received through the proxy is in the promoted backup's
 * replica. And the control: clients that bypass the proxy lose acknowledged writes, so the check
 * can fail.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { assertFreshBuild } from './daemon-harness.js';

const proof = join(import.meta.dirname, '..', '..', 'tools', 'commit', 'proof.mjs');
const run = (...args: string[]) => {
  const r = spawnSync(process.execPath, [proof, ...args, '--json'], { encoding: 'utf8', timeout: 300_000 });
  let report: Record<string, number>;
  try {
    report = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '');
  } catch {
    throw new Error(`the proof printed no report (exit ${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  }
  return { code: r.status, report, err: r.stderr };
};

describe('output commit: nothing a client was told is lost', () => {
  it('through the proxy: random kills of the primary, every acknowledged write at the backup', () => {
    assertFreshBuild();
    const { code, report, err } = run('--runs', '8', '--clients', '16');
    console.log(
      `output-commit proof: ${report.runs} runs, ${report.writesAcknowledged} acknowledged writes, ${report.losses} lost`,
    );
    expect(code, err).toBe(0);
    expect(report.runs).toBe(8);
    expect(report.losses).toBe(0);
    expect(report.writesAcknowledged).toBeGreaterThan(100);
  }, 300_000);

  it('the control, past the proxy: acknowledged writes are lost', () => {
    const { code, report } = run('--runs', '3', '--direct');
    console.log(
      `control without output commit: ${report.writesAcknowledged} acknowledged writes, ${report.losses} lost`,
    );
    expect(code).toBe(1);
    expect(report.losses).toBeGreaterThan(0);
  }, 300_000);
});
