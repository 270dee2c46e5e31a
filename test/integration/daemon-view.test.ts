/**
 * The failover controller's view of the replication daemons, read from real ones: a receiver waiting
 * for its primary, both sides while replicating, the sender while the receiver is frozen (silent: not
 * replicating for the controller, whatever the sender's own state), the receiver after kill -9 of the sender (suspect,
 * then lost after the dead time), and a daemon that is gone. Plus the reading of odd /status bodies.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type DaemonView,
  daemonView,
  observeDaemon,
  PEER_SILENCE_MS,
} from '../../src/failover/daemon-view.js';
import { assertFreshBuild, Procs, startPlainReceiver, startPlainSender, waitFor } from './daemon-harness.js';

const dir = mkdtempSync(join(tmpdir(), 'rwan-daemon-view-'));
const procs = new Procs(dir);
afterAll(async () => {
  await procs.killAll();
  rmSync(dir, { recursive: true, force: true });
});

describe('daemonView', () => {
  it('reads each state of each role, and anything else as down', () => {
    const rx = (primary: string) => daemonView({ role: 'receive', primary, lastCommittedEpoch: 7 });
    expect(rx('waiting')).toMatchObject({ daemonUp: true, peerUp: false, primaryLost: false, lastEpoch: 7 });
    expect(rx('alive')).toMatchObject({ peerUp: true, primaryLost: false });
    expect(rx('suspect')).toMatchObject({ peerUp: true, primaryLost: false });
    expect(rx('lost')).toMatchObject({ peerUp: false, primaryLost: true });
    expect(daemonView({ role: 'xen-receive', primary: 'lost', lastCommittedEpoch: 9 })).toMatchObject({
      role: 'receive',
      primaryLost: true,
      lastEpoch: 9,
    });
    const tx = (silentMs: number[]) =>
      daemonView({
        role: 'send',
        state: 'replicating',
        lastAckedEpoch: 3,
        peers: silentMs.map((ms) => ({ silentMs: ms })),
      });
    expect(tx([40, 900])).toMatchObject({ role: 'send', peerUp: true, lastEpoch: 3 }); // one channel heard
    expect(tx([PEER_SILENCE_MS, 900])).toMatchObject({
      peerUp: false,
      detail: `sender: replicating, the backup silent for ${PEER_SILENCE_MS} ms`,
    });
    expect(tx([])).toMatchObject({ peerUp: false, detail: 'sender: replicating, no channel' });
    expect(daemonView({ role: 'send', state: 'reconnecting' })).toMatchObject({
      peerUp: false,
      lastEpoch: null,
    });
    for (const odd of [null, 'text', 7, { role: 'relay' }]) {
      expect(daemonView(odd)).toMatchObject({ daemonUp: false, peerUp: false, primaryLost: false });
    }
  });
});

describe('observeDaemon against real daemons', () => {
  it('waiting, replicating, suspect then lost after kill -9 of the sender, and gone', async () => {
    assertFreshBuild();
    const { receiver, rxUrl, port } = await startPlainReceiver(procs, dir, 'v');
    await waitFor(
      'the receiver',
      15_000,
      async () => (await observeDaemon(rxUrl, 1000)).daemonUp,
      () => receiver.tail(),
    );
    const rx: DaemonView = await observeDaemon(rxUrl, 1000);
    expect(rx).toMatchObject({
      role: 'receive',
      peerUp: false,
      primaryLost: false,
      detail: 'receiver: primary waiting',
    });

    const { sender, txUrl } = await startPlainSender(procs, dir, 'v', port);
    await waitFor(
      'both sides replicating',
      20_000,
      async () => (await observeDaemon(rxUrl, 1000)).peerUp && (await observeDaemon(txUrl, 1000)).peerUp,
      () => `${sender.tail()}\n${receiver.tail()}`,
    );
    expect(await observeDaemon(txUrl, 1000)).toMatchObject({
      role: 'send',
      daemonUp: true,
      detail: 'sender: replicating',
    });

    // a frozen backup: the sender still says replicating (its idle timeout is 5 s), the view does not
    receiver.signal('SIGSTOP');
    try {
      await waitFor(
        'the backup counted silent',
        5000,
        async () => !(await observeDaemon(txUrl, 1000)).peerUp,
      );
      expect((await observeDaemon(txUrl, 1000)).detail).toMatch(
        /^sender: replicating, the backup silent for \d+ ms$/,
      );
    } finally {
      receiver.signal('SIGCONT');
    }
    await waitFor('the backup heard again', 10_000, async () => (await observeDaemon(txUrl, 1000)).peerUp);

    sender.signal('SIGKILL');
    await sender.exited;
    expect(await observeDaemon(txUrl, 500)).toMatchObject({ daemonUp: false, peerUp: false });
    const seen = new Set<string>();
    await waitFor('the primary declared lost', 10_000, async () => {
      const v = await observeDaemon(rxUrl, 1000);
      seen.add(v.detail);
      return v.primaryLost;
    });
    expect(seen).toContain('receiver: primary suspect'); // a blip so far: peerUp still, no promotion
    expect(seen).toContain('receiver: primary lost');
    expect(await observeDaemon(rxUrl, 1000)).toMatchObject({ peerUp: false, primaryLost: true });
  }, 60_000);
});
