import { describe, expect, it } from 'vitest';
import { usageOptions } from '../../tools/bench/harness.js';

describe('benchmarks: the options a usage text names', () => {
  it('a placeholder after an option makes it take a value; a bracket after it, a flag', () => {
    const usage = `npm run bench:x [-- --json] [--quick] [--links NAME,…] [--from-rate N | --rates N,N…]
  [--profile DIR [--profile-rate PAGES_PER_S]] [--encoder worker|pool|inline] [--send-args "…"] [--keep]
(the head of x.ts says what each does)`;
    expect([...usageOptions(usage)]).toEqual([
      ['--json', false],
      ['--quick', false],
      ['--links', true],
      ['--from-rate', true],
      ['--rates', true],
      ['--profile', true],
      ['--profile-rate', true],
      ['--encoder', true],
      ['--send-args', true],
      ['--keep', false],
    ]);
  });
});
