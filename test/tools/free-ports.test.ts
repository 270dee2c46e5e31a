import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { freePorts } from '../../tools/bench/harness.js';

describe('freePorts', () => {
  it('never hands out a port twice, within a call or across calls', async () => {
    const all: number[] = [];
    for (let i = 0; i < 300; i++) all.push(...(await freePorts(4)));
    expect(new Set(all).size).toBe(all.length);
  });

  it('hands out ports that can be listened on', async () => {
    for (const port of await freePorts(3)) {
      const s = createServer();
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(port, '127.0.0.1', resolve);
      });
      await new Promise((r) => s.close(r));
    }
  });
});
