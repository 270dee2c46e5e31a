/**
 * measureQmp against a real QEMU (TCG) guest whose /init keeps rewriting memory. Fails (does not skip)
 * when QEMU, the kernel or busybox-static is missing.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRwanError } from '../../src/errors.js';
import { writeMeasurementFile } from '../../src/measure/measurement-file.js';
import { measureQmp } from '../../src/measure/qemu-live.js';
import type { MeasurementFile } from '../../src/measure/types.js';
import { type QemuGuest, readSerial, startQemuGuest } from './qemu-guest.js';

let guest: QemuGuest;

beforeAll(async () => {
  guest = await startQemuGuest({ memoryMiB: 512 });
  try {
    await guest.waitReady(120_000);
  } catch (err) {
    const serial = await readSerial(guest);
    await guest.stop();
    throw new Error(`${(err as Error).message}\nserial console:\n${serial.slice(-2000)}`);
  }
}, 130_000);

afterAll(async () => {
  await guest?.stop();
});

describe('measureQmp on a real QEMU guest', () => {
  let file: MeasurementFile;
  const progress: string[] = [];

  beforeAll(async () => {
    file = await measureQmp({
      socketPath: guest.socketPath,
      windowsS: [2, 0.5, 1],
      guest: 'busybox-writer',
      onProgress: (m) => progress.push(m),
      now: () => new Date('2025-01-02T03:04:05Z'),
    });
  }, 60_000);

  it('describes the guest and QEMU', () => {
    expect(file.format).toBe('remus-plan/measurements@1');
    expect(file.guest).toBe('busybox-writer');
    expect(file.startedAt).toBe('2025-01-02T03:04:05.000Z');
    expect(file.qemuVersion).toMatch(/^\d+\.\d+\.\d+$/);
    expect(file.memoryBytes).toBe(512 * 2 ** 20);
    expect(file.pageSize).toBe(4096);
    expect(file.mode).toBe('page-sampling');
    expect(file.samplePagesPerGiB).toBe(512);
    expect(file.source).toContain(guest.socketPath);
    expect(progress.length).toBeGreaterThan(0);
  });

  it('measures each window, whole seconds only before QEMU 8.2', () => {
    const [major, minor] = (file.qemuVersion ?? '').split('.').map(Number) as [number, number];
    const hasMs = major * 100 + minor >= 802;
    expect(file.measurements.map((m) => m.windowMs)).toEqual(hasMs ? [500, 1000, 2000] : [1000, 2000]);
    if (!hasMs) expect(file.notes?.join('\n')).toContain('0.5 s as 1 s');
    for (const m of file.measurements) {
      expect(Number.isInteger(m.dirtyRateMiBps) && m.dirtyRateMiBps >= 0).toBe(true);
      expect(m.pages).toBeCloseTo((m.dirtyRateMiBps * 2 ** 20 * (m.windowMs / 1000)) / 4096, 6);
    }
  });

  it('sees the writer dirty memory', () => {
    expect(Math.max(...file.measurements.map((m) => m.dirtyRateMiBps))).toBeGreaterThan(0);
  });

  it('writes the file as pretty JSON that reads back equal', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rwan-mf-'));
    try {
      const path = join(dir, 'm.json');
      await writeMeasurementFile(path, file);
      const text = await readFile(path, 'utf8');
      expect(text).toMatch(/^\{\n {2}"format"/);
      expect(JSON.parse(text)).toEqual(file);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('measureQmp errors', () => {
  it('fails with RWAN_ERR_QMP on a missing socket, naming it', async () => {
    const socketPath = join(tmpdir(), 'rwan-no-such-dir', 'qmp.sock');
    const err = await measureQmp({ socketPath, windowsS: [1] }).catch((e: unknown) => e);
    expect(isRwanError(err, 'RWAN_ERR_QMP')).toBe(true);
    expect((err as Error).message).toContain(socketPath);
  });

  it('refuses a non-positive window before connecting', async () => {
    const err = await measureQmp({ socketPath: guest.socketPath, windowsS: [1, 0] }).catch((e: unknown) => e);
    expect(isRwanError(err, 'RWAN_ERR_INVALID_VALUE')).toBe(true);
  });

  it('fails with RWAN_ERR_IO when the file cannot be written', async () => {
    const err = await writeMeasurementFile('/nonexistent-dir/m.json', {
      format: 'remus-plan/measurements@1',
      source: 'test',
      startedAt: new Date(0).toISOString(),
      pageSize: 4096,
      mode: 'page-sampling',
      measurements: [],
    }).catch((e: unknown) => e);
    expect(isRwanError(err, 'RWAN_ERR_IO')).toBe(true);
  });
});

describe('remus-plan measure qmp → remus-plan --input, end to end on the real guest', () => {
  it('measures, writes the file, and plans from it', async () => {
    const { main } = await import('../../src/cli/plan.js');
    const dir = await mkdtemp(join(tmpdir(), 'remus-plan-cli-'));
    try {
      const out = join(dir, 'vm.json');
      const err: string[] = [];
      const io = { out: () => undefined, err: (t: string) => err.push(t) };
      const code = await main(
        [
          'measure',
          'qmp',
          '--socket',
          guest.socketPath,
          '--windows',
          '1s,2s',
          '--repeat',
          '2',
          '--guest',
          'writer',
          '--out',
          out,
        ],
        io,
      );
      expect(code, err.join('')).toBe(0);
      expect(err.join('')).toMatch(/2000 ms \(2 of 2\)/); // progress went to stderr
      const file = JSON.parse(await readFile(out, 'utf8')) as MeasurementFile;
      expect(file.measurements.map((m) => m.windowMs)).toEqual([1000, 1000, 2000, 2000]);
      const printed: string[] = [];
      const planCode = await main(['--input', out, '--bandwidth', '100Mbit/s', '--rtt', '10ms', '--json'], {
        out: (t) => printed.push(t),
        err: (t) => err.push(t),
      });
      expect(planCode, err.join('')).toBe(0);
      const result = JSON.parse(printed.join(''));
      expect(result.guests[0].name).toBe('writer');
      expect(result.guests[0].dirtyModel.model).toBe('power-law');
      expect(result.guests[0].dirtyModel.windowsMs).toEqual([1000, 2000]);
      expect(result.guests[0].plans.length).toBeGreaterThan(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
