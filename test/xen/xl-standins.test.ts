/**
 * The stand-ins for xl (tools/xen): the sender runs the `-s` command as xl does, checks the banner
 * and writes a stream a checkpoint interval apart, recording when each checkpoint's last write
 * returned; the receiver answers with the banner and checks the bytes. Connected directly (what
 * `xl remus -s ""`-style plumbing gives: one pipe), the stream arrives byte for byte.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { assertFreshBuild } from '../integration/daemon-harness.js';

const root = join(import.meta.dirname, '..', '..');
const tool = (name: string) => join(root, 'tools', 'xen', name);
const dir = mkdtempSync(join(tmpdir(), 'xl-standins-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('xl stand-ins', () => {
  it('banner, then the stream byte for byte; one write-return time per checkpoint', () => {
    assertFreshBuild();
    const stream = join(dir, 'a.stream');
    execFileSync(process.execPath, [
      tool('generate.mjs'),
      '--pages',
      '2000',
      '--checkpoints',
      '4',
      '--dirty',
      '150',
      '--live',
      '1',
      '--out',
      stream,
    ]);
    const log = join(dir, 'a.log');
    const times = join(dir, 'a.times');
    const r = spawnSync(
      process.execPath,
      [
        tool('xl-sender.mjs'),
        '--cmd',
        `${process.execPath} ${tool('xl-receiver.mjs')} --expect ${stream} --times ${times}`,
        '--stream',
        stream,
        '--interval',
        '20',
        '--e',
        '--log',
        log,
      ],
      { encoding: 'utf8', timeout: 60_000 },
    );
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/"identical":true/);
    expect(r.stderr).toMatch(/"end":\{"at":"checkpoint","checkpoints":5\}/);
    const rows = readFileSync(log, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { checkpoint: number; returnedMs: number });
    expect(rows.map((x) => x.checkpoint)).toEqual([0, 1, 2, 3, 4]);
    for (let i = 1; i < rows.length; i++)
      expect((rows[i] as { returnedMs: number }).returnedMs).toBeGreaterThan(
        (rows[i - 1] as { returnedMs: number }).returnedMs + 19,
      );
    expect(readFileSync(times, 'utf8').trim().split('\n')).toHaveLength(5);
  });

  it('a receiver that does not answer with the banner: the sender stops (exit 3), as xl does', () => {
    const stream = join(dir, 'b.stream');
    execFileSync(process.execPath, [
      tool('generate.mjs'),
      '--pages',
      '100',
      '--checkpoints',
      '1',
      '--dirty',
      '5',
      '--out',
      stream,
    ]);
    const r = spawnSync(
      process.execPath,
      [
        tool('xl-sender.mjs'),
        '--cmd',
        'echo ssh: connect to host backup port 22: Connection refused, retrying later',
        '--stream',
        stream,
      ],
      {
        encoding: 'utf8',
        timeout: 30_000,
      },
    );
    expect(r.status).toBe(3);
    expect(r.stderr).toMatch(/wrong banner "ssh: connect to host backup/);
  });
});
