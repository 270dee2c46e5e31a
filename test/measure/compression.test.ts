import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isRwanError } from '../../src/errors.js';
import { measureCompression, sampleCompressionFile } from '../../src/measure/compression.js';

const PAGE = 4096;

describe('measureCompression (zstd on real bytes)', () => {
  it('zero pages cost nothing, random pages cost about their size, text compresses', () => {
    const zero = Buffer.alloc(16 * PAGE);
    expect(measureCompression(zero, PAGE, 'zero').zeroPages).toBe(16);
    expect(measureCompression(zero, PAGE, 'zero').ratio).toBeLessThan(0.001);

    const random = randomBytes(64 * PAGE);
    const r = measureCompression(random, PAGE, 'random');
    expect(r.ratio).toBeGreaterThan(0.99);
    expect(r.ratio).toBeLessThanOrEqual(1); // incompressible chunks go raw, never bigger

    const text = Buffer.from(
      'SELECT id, name FROM users WHERE id = 42;\n'.repeat(Math.ceil((64 * PAGE) / 42)),
    ).subarray(0, 64 * PAGE);
    expect(measureCompression(text, PAGE, 'text').ratio).toBeLessThan(0.05);

    const mixed = Buffer.concat([zero, random.subarray(0, 16 * PAGE), text.subarray(0, 32 * PAGE)]);
    const m = measureCompression(mixed, PAGE, 'mixed');
    expect(m.pages).toBe(64);
    expect(m.zeroPages).toBe(16);
    expect(m.ratio).toBeGreaterThan(0.2);
    expect(m.ratio).toBeLessThan(0.3);
  });

  it('reads a dump from a file and refuses one shorter than a page', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'remus-plan-cmp-'));
    try {
      await writeFile(join(dir, 'dump'), Buffer.concat([Buffer.alloc(PAGE), randomBytes(PAGE)]));
      const r = await sampleCompressionFile(join(dir, 'dump'), PAGE);
      expect(r.ratio).toBeGreaterThan(0.45);
      expect(r.ratio).toBeLessThan(0.51);
      await writeFile(join(dir, 'tiny'), Buffer.alloc(100));
      await expect(sampleCompressionFile(join(dir, 'tiny'), PAGE)).rejects.toSatisfy((e) =>
        isRwanError(e, 'RWAN_ERR_INVALID_INPUT'),
      );
      await expect(sampleCompressionFile(join(dir, 'nope'), PAGE)).rejects.toSatisfy((e) =>
        isRwanError(e, 'RWAN_ERR_IO'),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
