/**
 * What the failover controller reads from the replication daemon of its own site: its `/status`
 * (docs/daemon.md), turned into the controller's observation fields.
 *
 *   receive (the backup; xen-receive too)
 *                         peerUp: the primary is heard (`primary` alive, or suspect: a blip so far);
 *                         primaryLost: `primary` is `lost` (silent for the daemon's whole dead time)
 *   send (the primary)    peerUp: `state` is `replicating` and a channel heard the backup within
 *                         PEER_SILENCE_MS (the sender itself drops a connection only after its idle
 *                         timeout, 5 s by default: longer than the backup's dead time)
 *
 * A daemon that does not answer says nothing about the other site: peerUp is false and primaryLost
 * false (a backup whose own receiver is down must not promote on that alone).
 */

/**
 * The primary counts the backup lost after this much silence on every channel, ms: three of the
 * daemons' default 200 ms heartbeats. The start-up timing check (controller.ts timingProblem) counts it.
 */
export const PEER_SILENCE_MS = 600;

export interface DaemonView {
  /** The daemon answered its /status. */
  daemonUp: boolean;
  role: 'send' | 'receive' | null;
  peerUp: boolean;
  primaryLost: boolean;
  /** The last epoch committed (receiver) or acknowledged (sender), or null. */
  lastEpoch: number | null;
  /** The state the view was made from, in words (for the decision log). */
  detail: string;
}

const DOWN: DaemonView = {
  daemonUp: false,
  role: null,
  peerUp: false,
  primaryLost: false,
  lastEpoch: null,
  detail: 'the replication daemon does not answer',
};

/** The view of a `/status` body (pure). */
export function daemonView(status: unknown): DaemonView {
  if (status === null || typeof status !== 'object')
    return { ...DOWN, detail: 'the daemon answered no status object' };
  const s = status as Record<string, unknown>;
  const epoch = (v: unknown) => (Number.isSafeInteger(v) ? (v as number) : null);
  if (s.role === 'receive' || s.role === 'xen-receive') {
    // a replica receiver, or a Xen one (remus-wan xen-receive): the same failure detector
    const primary = String(s.primary);
    return {
      daemonUp: true,
      role: 'receive',
      peerUp: primary === 'alive' || primary === 'suspect',
      primaryLost: primary === 'lost',
      lastEpoch: epoch(s.lastCommittedEpoch),
      detail: `receiver: primary ${primary}`,
    };
  }
  if (s.role === 'send') {
    const state = String(s.state);
    const silences = (Array.isArray(s.peers) ? s.peers : [])
      .map((p) => (p as { silentMs?: unknown }).silentMs)
      .filter((ms): ms is number => typeof ms === 'number');
    const silentMs = silences.length > 0 ? Math.min(...silences) : null;
    const heard = silentMs !== null && silentMs < PEER_SILENCE_MS;
    return {
      daemonUp: true,
      role: 'send',
      peerUp: state === 'replicating' && heard,
      primaryLost: false,
      lastEpoch: epoch(s.lastAckedEpoch),
      detail: `sender: ${state}${silentMs === null ? ', no channel' : heard ? '' : `, the backup silent for ${silentMs} ms`}`,
    };
  }
  return { ...DOWN, detail: `the daemon answered an unknown role ${JSON.stringify(s.role)}` };
}

/** GET `url`/status and read it; a daemon that does not answer within `timeoutMs` is down. */
export async function observeDaemon(url: string, timeoutMs: number): Promise<DaemonView> {
  try {
    const res = await fetch(`${url}/status`, { signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) return { ...DOWN, detail: `the daemon's /status answered HTTP ${res.status}` };
    return daemonView(await res.json());
  } catch {
    return DOWN;
  }
}

/** What the receiver answered a promotion: the epoch its stream ended at, or why it did not. */
export type DaemonPromotion =
  | { ok: true; token: number; epoch: number | null }
  | { ok: false; reason: string };

/**
 * POST `url`/promote: the backup's receiver ends the stream at its last complete epoch and refuses
 * the primary from then on (docs/daemon.md, Operations).
 */
export async function promoteDaemon(url: string, token: number, timeoutMs: number): Promise<DaemonPromotion> {
  try {
    const res = await fetch(`${url}/promote`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const b = (await res.json()) as { promoted?: { token?: unknown; epoch?: unknown }; error?: unknown };
    const p = b.promoted;
    if (!res.ok || p === undefined || !Number.isSafeInteger(p.token))
      return { ok: false, reason: `HTTP ${res.status}: ${JSON.stringify(b.error ?? b)}` };
    return {
      ok: true,
      token: p.token as number,
      epoch: Number.isSafeInteger(p.epoch) ? (p.epoch as number) : null,
    };
  } catch (err) {
    return { ok: false, reason: `no answer: ${(err as Error).message}` };
  }
}
