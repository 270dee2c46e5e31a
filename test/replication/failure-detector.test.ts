import { describe, expect, it } from 'vitest';
import { FailureDetector } from '../../src/replication/failure-detector.js';

describe('FailureDetector', () => {
  it('follows the table: waiting, alive, suspect, lost once, back', () => {
    const d = new FailureDetector({ deadTimeMs: 1000, suspectMs: 200 });
    const rows: Array<[string, number, string | undefined, string]> = [
      ['tick', 5000, undefined, 'waiting'], // never heard: nothing to lose
      ['heard', 5000, undefined, 'alive'],
      ['tick', 5150, undefined, 'alive'],
      ['tick', 5300, undefined, 'suspect'], // a blip
      ['heard', 5900, undefined, 'alive'], // shorter than the dead time: nothing happened
      ['tick', 6899, undefined, 'suspect'],
      ['tick', 6900, 'primary-lost', 'lost'],
      ['tick', 9000, undefined, 'lost'], // once per loss
      ['heard', 9100, 'primary-back', 'alive'],
      ['tick', 10_100, 'primary-lost', 'lost'],
    ];
    for (const [op, now, event, state] of rows) {
      expect(op === 'tick' ? d.tick(now) : d.heard(now), `${op}@${now}`).toBe(event);
      expect(d.state, `${op}@${now}`).toBe(state);
    }
  });

  it('needs a positive dead time', () => {
    expect(() => new FailureDetector({ deadTimeMs: 0 })).toThrow(RangeError);
  });
});
