/** The output-commit gate (src/replication/output-commit.ts): what waits for which epoch, in order. */
import { describe, expect, it } from 'vitest';
import { type Held, OutputCommit } from '../../src/replication/output-commit.js';

describe('OutputCommit', () => {
  it('holds each piece until the epoch captured after it is acknowledged, in order, ends included', () => {
    const out: Array<[number, string]> = [];
    const g = new OutputCommit((s: number, h: Held) =>
      out.push([s, h.kind === 'data' ? h.bytes.toString() : 'END']),
    );
    g.hold(1, { kind: 'data', bytes: Buffer.from('a') }); // before any capture: waits for epoch 1
    g.captureStarting(1);
    g.hold(1, { kind: 'data', bytes: Buffer.from('b') }); // during capture 1: waits for epoch 2
    g.hold(2, { kind: 'data', bytes: Buffer.from('c') });
    g.captureStarting(2);
    g.hold(1, { kind: 'end' }); // waits for epoch 3
    expect(g.heldBytes).toBe(3);
    g.acked(1);
    expect(out).toEqual([[1, 'a']]);
    g.captureStarting(3);
    g.acked(3); // acknowledgements come in order; 3 covers 2
    expect(out).toEqual([
      [1, 'a'],
      [1, 'b'],
      [2, 'c'],
      [1, 'END'],
    ]);
    expect(g.heldBytes).toBe(0);
    g.acked(2); // an older acknowledgement changes nothing
    expect(out).toHaveLength(4);
  });

  it('a stream dropped loses what was held for it, and only that', () => {
    const out: number[] = [];
    const g = new OutputCommit((s: number) => out.push(s));
    g.hold(1, { kind: 'data', bytes: Buffer.alloc(10) });
    g.hold(2, { kind: 'data', bytes: Buffer.alloc(5) });
    g.drop(1);
    expect(g.heldBytes).toBe(5);
    g.captureStarting(1);
    g.acked(1);
    expect(out).toEqual([2]);
  });
});
