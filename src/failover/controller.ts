/**
 * The failover controller's decisions: a pure `step()` from what the controller last decided and what
 * it observes now to what it decides next — the routes to announce or withdraw, a promotion — and
 * why. No I/O, no clock: the runner (`remus-failover run`) gathers the observation (its own check,
 * the disable file, the replication daemon's view of its peer, the witness) and carries out the
 * actions in order.
 *
 * Two layers:
 *
 *   phase      the health of the service here, as ExaBGP's healthcheck tracks it: INIT, DISABLED,
 *              RISING, FALLING, UP, DOWN, EXIT; `rise` successes in a row to go UP, `fall` failures
 *              to go DOWN; a disable file forces DISABLED; EXIT (SIGTERM) always withdraws.
 *   authority  whether this site may announce at all:
 *                active      the primary, or a backup that was promoted;
 *                standby     a backup that was not: it never announces;
 *                fenced      a primary that lost the backup, and whose witness did not answer or could
 *                            not reach it, for `fenceAfterMs`: it withdraws before the backup may
 *                            promote (see timingProblem), and comes back only when the backup is heard
 *                            or the witness reaches it again, either vouching that nothing was promoted;
 *                superseded  a primary that learnt of a higher fencing token: someone else was
 *                            promoted; it withdraws and never announces again.
 *
 * A backup promotes only when the replication daemon has declared the primary lost (silent for its
 * dead time) AND the witness answers that it cannot reach the primary either. Promotion increments
 * the fencing token, which the runner persists before anything else, and which travels with every
 * decision.
 *
 * What is announced follows (authority, phase): active and UP: the route with the `up` MED; active and
 * DOWN or DISABLED: withdrawn with `withdrawOnDown`, else announced with the `down` or `disabled` MED;
 * RISING, FALLING and INIT keep what was announced; anything not active, and EXIT: withdrawn. An
 * announcement or withdrawal is an action only when it differs from the last one made (the runner
 * re-sends everything when a BGP session comes back).
 */

export type Phase = 'INIT' | 'DISABLED' | 'RISING' | 'FALLING' | 'UP' | 'DOWN' | 'EXIT';
export type Authority = 'active' | 'standby' | 'fenced' | 'superseded';

/** What the routes are, as last sent. */
export type Advertised = { kind: 'announced'; med: number } | { kind: 'withdrawn' } | { kind: 'none' };

export interface ControllerConfig {
  role: 'primary' | 'backup';
  /** Successes in a row from DOWN (or INIT) to UP (healthcheck's `--rise`, default 3). */
  rise: number;
  /** Failures in a row from UP to DOWN (`--fall`, default 3). */
  fall: number;
  /** MED per state (healthcheck's `--up-metric 100`, `--down-metric 1000`, `--disabled-metric 500`). */
  med: { up: number; down: number; disabled: number };
  /** Withdraw when DOWN or DISABLED instead of announcing a worse MED. */
  withdrawOnDown: boolean;
  /** Primary: withdraw after losing the backup and the witness’s backing for this long, ms. */
  fenceAfterMs: number;
}

export interface ControllerState {
  phase: Phase;
  authority: Authority;
  /** Successes (RISING) or failures (FALLING) counted so far. */
  count: number;
  /** The fencing token: the number of promotions this pair has seen, as far as this site knows. */
  token: number;
  /** Since when the replication peer has been unreachable (ms), or null. */
  peerDownSince: number | null;
  /**
   * Since when the witness has not vouched for the primary (ms), or null: it did not answer, or it
   * answered that it cannot reach the primary (then it would grant the backup's promotion).
   */
  witnessDownSince: number | null;
  advertised: Advertised;
}

/** What the runner saw since the last step. */
export interface Observation {
  /** Milliseconds on a monotonic clock. */
  now: number;
  /** The result of this site's own check (exit 0 = true); null: no check configured (healthy). */
  check: boolean | null;
  /** The disable file exists. */
  disabled: boolean;
  /** SIGTERM or a stop request. */
  exit: boolean;
  /** The replication peer is heard (primary: the backup acknowledges; backup: the primary's heartbeats). */
  peerUp: boolean;
  /** Backup: the replication daemon declared the primary lost (silent for its whole dead time). */
  primaryLost: boolean;
  /** The witness answered. */
  witnessUp: boolean;
  /** The witness reaches the primary (null: not asked, or no answer). */
  witnessSeesPrimary: boolean | null;
  /** The highest fencing token the peer or the witness reported (null: none reported). */
  knownToken: number | null;
}

export type Action =
  /** Persist the new token (before any other action of the step). */
  | { kind: 'persist-token'; token: number }
  /** Tell the replication daemon to end the stream at the last complete epoch and start the service. */
  | { kind: 'promote'; token: number }
  | { kind: 'announce'; med: number }
  | { kind: 'withdraw' }
  /** Run the state hook (healthcheck's --execute) with the new phase and authority. */
  | { kind: 'hook'; phase: Phase; authority: Authority };

export interface Decision {
  state: ControllerState;
  actions: Action[];
  /** Why, in words, for the log: each rule that fired or held the state. */
  reasons: string[];
}

/**
 * The state a controller starts in: a backup standby, a primary fenced (it announces once the backup
 * answers, or the witness reaches it and knows no promotion past its token: a primary restarted
 * while cut off must not announce over a backup promoted meanwhile), token as persisted.
 */
export function initialState(cfg: ControllerConfig, token: number): ControllerState {
  return {
    phase: 'INIT',
    authority: cfg.role === 'primary' ? 'fenced' : 'standby',
    count: 0,
    token,
    peerDownSince: null,
    witnessDownSince: null,
    advertised: { kind: 'none' },
  };
}

/** The phase after one check result (healthcheck's FSM). */
function nextPhase(cfg: ControllerConfig, s: ControllerState, ok: boolean): { phase: Phase; count: number } {
  const up = (count: number) =>
    count >= cfg.rise ? { phase: 'UP' as const, count: 0 } : { phase: 'RISING' as const, count };
  const down = (count: number) =>
    count >= cfg.fall ? { phase: 'DOWN' as const, count: 0 } : { phase: 'FALLING' as const, count };
  switch (s.phase) {
    case 'INIT':
    case 'DISABLED':
      return ok ? up(1) : down(1);
    case 'UP':
      return ok ? { phase: 'UP', count: 0 } : down(1);
    case 'FALLING':
      return ok ? { phase: 'UP', count: 0 } : down(s.count + 1);
    case 'DOWN':
      return ok ? up(1) : { phase: 'DOWN', count: 0 };
    case 'RISING':
      return ok ? up(s.count + 1) : { phase: 'DOWN', count: 0 };
    case 'EXIT':
      return { phase: 'EXIT', count: 0 };
  }
}

/** What should be advertised in (authority, phase), or undefined: keep what is. */
function wanted(cfg: ControllerConfig, authority: Authority, phase: Phase): Advertised | undefined {
  if (authority !== 'active' || phase === 'EXIT') return { kind: 'withdrawn' };
  switch (phase) {
    case 'UP':
      return { kind: 'announced', med: cfg.med.up };
    case 'DOWN':
      return cfg.withdrawOnDown ? { kind: 'withdrawn' } : { kind: 'announced', med: cfg.med.down };
    case 'DISABLED':
      return cfg.withdrawOnDown ? { kind: 'withdrawn' } : { kind: 'announced', med: cfg.med.disabled };
    default:
      return undefined;
  }
}

function same(a: Advertised, b: Advertised): boolean {
  return a.kind === b.kind && (a.kind !== 'announced' || a.med === (b as { med: number }).med);
}

/** One decision. Pure: the same inputs give the same outputs. */
export function step(cfg: ControllerConfig, s: ControllerState, o: Observation): Decision {
  const reasons: string[] = [];
  const actions: Action[] = [];
  let { authority, token } = s;
  const peerDownSince = o.peerUp ? null : (s.peerDownSince ?? o.now);
  const witnessDownSince =
    o.witnessUp && o.witnessSeesPrimary !== false ? null : (s.witnessDownSince ?? o.now);

  // -- authority ---------------------------------------------------------------------------------
  if (o.knownToken !== null && o.knownToken > token && authority !== 'standby') {
    reasons.push(`a higher fencing token (${o.knownToken} > ${token}): another site was promoted`);
    authority = 'superseded';
    token = o.knownToken;
  } else if (authority === 'standby') {
    if (o.knownToken !== null && o.knownToken > token) {
      token = o.knownToken;
      actions.push({ kind: 'persist-token', token });
      reasons.push(`learnt fencing token ${token}`);
    }
    if (!o.primaryLost) {
      if (!o.peerUp) reasons.push('the primary is silent, not yet for the dead time: standing by');
    } else if (!o.witnessUp) {
      reasons.push('the primary is lost, but the witness does not answer: cannot confirm, standing by');
    } else if (o.witnessSeesPrimary !== false) {
      reasons.push(
        o.witnessSeesPrimary === true
          ? 'the primary is lost to us, but the witness still reaches it: a partition, standing by'
          : 'the primary is lost, but the witness has not said whether it reaches it: standing by',
      );
    } else if (o.disabled || o.exit) {
      reasons.push(
        `the primary is lost and the witness agrees, but this site is ${o.exit ? 'stopping' : 'disabled'}`,
      );
    } else {
      token += 1;
      authority = 'active';
      actions.push({ kind: 'persist-token', token }, { kind: 'promote', token });
      reasons.push(
        `the primary is lost and the witness cannot reach it either: promoting with fencing token ${token}`,
      );
    }
  } else if (authority === 'active' && s.authority === 'active' && cfg.role === 'primary') {
    const lostBoth =
      peerDownSince !== null &&
      witnessDownSince !== null &&
      o.now - peerDownSince >= cfg.fenceAfterMs &&
      o.now - witnessDownSince >= cfg.fenceAfterMs;
    if (lostBoth) {
      authority = 'fenced';
      reasons.push(
        `for ${cfg.fenceAfterMs} ms the backup has been silent and the witness has not vouched for this site ` +
          `(${o.witnessUp ? 'it cannot reach it' : 'no answer'}): withdrawing before the backup may promote`,
      );
    }
  } else if (authority === 'fenced') {
    const again = s.phase === 'INIT' ? '' : ' again';
    if (o.peerUp && (o.knownToken === null || o.knownToken <= token)) {
      authority = 'active';
      reasons.push(`the backup is heard${again} and was not promoted: active${again}`);
    } else if (
      o.witnessUp &&
      o.witnessSeesPrimary === true &&
      o.knownToken !== null &&
      o.knownToken <= token
    ) {
      // reaching this site, the witness refuses any promotion from now on
      authority = 'active';
      reasons.push(
        `the witness reaches this site and knows no promotion past token ${token}: active${again}`,
      );
    } else {
      reasons.push(
        `fenced${s.phase === 'INIT' ? ' at start-up' : ''}: waiting for the backup or the witness to vouch that nothing was promoted`,
      );
    }
  }

  // -- phase -------------------------------------------------------------------------------------
  let phase: Phase;
  let count = s.count;
  if (o.exit || s.phase === 'EXIT') {
    phase = 'EXIT';
    count = 0;
    if (s.phase !== 'EXIT') reasons.push('stopping: withdrawing');
  } else if (o.disabled) {
    phase = 'DISABLED';
    count = 0;
    if (s.phase !== 'DISABLED') reasons.push('the disable file exists');
  } else if (authority === 'active' && s.authority === 'standby') {
    // just promoted: the replica is the service now; its checks may take it down from here
    phase = 'UP';
    count = 0;
  } else {
    const ok = o.check ?? true;
    ({ phase, count } = nextPhase(cfg, s, ok));
    if (phase !== s.phase) reasons.push(`check ${ok ? 'passed' : 'failed'}: ${s.phase} → ${phase}`);
  }

  // -- routes ------------------------------------------------------------------------------------
  let advertised = s.advertised;
  const want = wanted(cfg, authority, phase);
  if (want !== undefined && !same(want, advertised)) {
    // nothing was ever announced: a first withdrawal is still sent (a restart may find an old route)
    actions.push(want.kind === 'announced' ? { kind: 'announce', med: want.med } : { kind: 'withdraw' });
    advertised = want;
  }
  if (phase !== s.phase || authority !== s.authority) actions.push({ kind: 'hook', phase, authority });
  return {
    state: { phase, authority, count, token, peerDownSince, witnessDownSince, advertised },
    actions,
    reasons,
  };
}

/** The timings whose order keeps two primaries from announcing at once. */
export interface FailoverTimings {
  /** The primary's view counts the backup lost after this much silence (ms; daemon-view.ts). */
  peerSilenceMs: number;
  /** The primary withdraws after losing the backup and the witness's backing this long (ms). */
  fenceAfterMs: number;
  /** The primary's controller loop interval (ms): a loss is noticed up to this late. */
  primaryIntervalMs: number;
  /** Longest an ExaBGP command may take to be acknowledged (ms). */
  commandTimeoutMs: number;
  /** The backup's replication dead time: silence before "primary lost" (ms). */
  deadTimeMs: number;
  /** Margin kept between the two (ms). */
  marginMs: number;
}

/**
 * The invariant checked at start-up: a primary cut off from both the backup and the witness has
 * withdrawn (silence before it counts the backup lost, fence time, a loop interval to notice, the
 * command's acknowledgement) before the backup can declare it lost, with a margin. Returns why not,
 * or undefined when it holds.
 */
export function timingProblem(t: FailoverTimings): string | undefined {
  const withdrawnBy =
    t.peerSilenceMs + t.fenceAfterMs + t.primaryIntervalMs + t.commandTimeoutMs + t.marginMs;
  if (withdrawnBy < t.deadTimeMs) return undefined;
  return (
    `the primary would withdraw only after ${withdrawnBy} ms (silence ${t.peerSilenceMs} + fence ${t.fenceAfterMs} ` +
    `+ interval ${t.primaryIntervalMs} + command timeout ${t.commandTimeoutMs} + margin ${t.marginMs}), not ` +
    `before the backup's dead time of ${t.deadTimeMs} ms: two sites could announce at once`
  );
}
