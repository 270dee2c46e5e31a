/**
 * The controller's step(), from tables: each row an observation and what must follow (phase,
 * authority, token, the actions in order). Healthcheck semantics, promotion only with the witness,
 * self-fencing, supersession, and the start-up timing invariant.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type Action,
  type ControllerConfig,
  type ControllerState,
  initialState,
  type Observation,
  step,
  timingProblem,
} from '../../src/failover/controller.js';

const base: Omit<ControllerConfig, 'role'> = {
  rise: 3,
  fall: 3,
  med: { up: 100, down: 1000, disabled: 500 },
  withdrawOnDown: false,
  fenceAfterMs: 1000,
};

/** A healthy, connected observation at `now`, with `o` on top. */
function obs(now: number, o: Partial<Observation> = {}): Observation {
  return {
    now,
    check: true,
    disabled: false,
    exit: false,
    peerUp: true,
    primaryLost: false,
    witnessUp: true,
    witnessSeesPrimary: null,
    knownToken: null,
    ...o,
  };
}

type Row = [Partial<Observation>, Partial<ControllerState>, Action[]];

/** Runs the rows from the initial state, checking each decision; returns the last state. */
function play(cfg: ControllerConfig, rows: Row[], token = 0): ControllerState {
  let s = initialState(cfg, token);
  rows.forEach(([o, want, actions], i) => {
    const d = step(cfg, s, obs(i * 200, o));
    expect(d.state, `row ${i}: ${d.reasons.join('; ')}`).toMatchObject(want);
    expect(d.actions, `row ${i}`).toEqual(actions);
    expect(d.reasons.every((r) => typeof r === 'string' && r.length > 0)).toBe(true);
    s = d.state;
  });
  return s;
}

const hook = (phase: ControllerState['phase'], authority: ControllerState['authority']): Action => ({
  kind: 'hook',
  phase,
  authority,
});

describe('phases, as the healthcheck has them', () => {
  const primary: ControllerConfig = { ...base, role: 'primary' };

  it('rises after 3 successes, falls after 3 failures, announces UP and DOWN with their MEDs', () => {
    play(primary, [
      [{}, { phase: 'RISING', count: 1 }, [hook('RISING', 'active')]],
      [{}, { phase: 'RISING', count: 2 }, []],
      [{}, { phase: 'UP' }, [{ kind: 'announce', med: 100 }, hook('UP', 'active')]],
      [{}, { phase: 'UP' }, []], // nothing new: no action (idempotent)
      [{ check: false }, { phase: 'FALLING', count: 1 }, [hook('FALLING', 'active')]],
      [{ check: true }, { phase: 'UP' }, [hook('UP', 'active')]], // one success ends FALLING
      [{ check: false }, { phase: 'FALLING', count: 1 }, [hook('FALLING', 'active')]],
      [{ check: false }, { phase: 'FALLING', count: 2 }, []],
      [{ check: false }, { phase: 'DOWN' }, [{ kind: 'announce', med: 1000 }, hook('DOWN', 'active')]],
      [{ check: true }, { phase: 'RISING', count: 1 }, [hook('RISING', 'active')]],
      [{ check: false }, { phase: 'DOWN' }, [hook('DOWN', 'active')]], // a failure while RISING: DOWN again
    ]);
  });

  it('rise 1 goes UP at once; no check configured counts as healthy; withdraw-on-down withdraws', () => {
    const cfg = { ...primary, rise: 1, fall: 1, withdrawOnDown: true };
    play(cfg, [
      [{ check: null }, { phase: 'UP' }, [{ kind: 'announce', med: 100 }, hook('UP', 'active')]],
      [{ check: false }, { phase: 'DOWN' }, [{ kind: 'withdraw' }, hook('DOWN', 'active')]],
      [{ check: true }, { phase: 'UP' }, [{ kind: 'announce', med: 100 }, hook('UP', 'active')]],
    ]);
  });

  it('the disable file: DISABLED with its MED (or withdrawn), then back through RISING', () => {
    play({ ...primary, rise: 1 }, [
      [{}, { phase: 'UP' }, [{ kind: 'announce', med: 100 }, hook('UP', 'active')]],
      [
        { disabled: true },
        { phase: 'DISABLED' },
        [{ kind: 'announce', med: 500 }, hook('DISABLED', 'active')],
      ],
      [{ disabled: true }, { phase: 'DISABLED' }, []],
      [{}, { phase: 'UP' }, [{ kind: 'announce', med: 100 }, hook('UP', 'active')]],
    ]);
    play({ ...primary, rise: 1, withdrawOnDown: true }, [
      [{ disabled: true }, { phase: 'DISABLED' }, [{ kind: 'withdraw' }, hook('DISABLED', 'active')]],
    ]);
  });

  it('EXIT always withdraws, and stays', () => {
    play({ ...primary, rise: 1 }, [
      [{}, { phase: 'UP' }, [{ kind: 'announce', med: 100 }, hook('UP', 'active')]],
      [{ exit: true }, { phase: 'EXIT' }, [{ kind: 'withdraw' }, hook('EXIT', 'active')]],
      [{ exit: false }, { phase: 'EXIT' }, []],
    ]);
  });
});

describe('a backup promotes only when the primary is lost and the witness agrees', () => {
  const backup: ControllerConfig = { ...base, role: 'backup' };
  const lost = { peerUp: false, primaryLost: true };

  it('stands by (withdrawn) while the primary is heard, silent, or lost without the witness’s word', () => {
    const s = play(backup, [
      [{}, { authority: 'standby' }, [{ kind: 'withdraw' }, hook('RISING', 'standby')]],
      [{ peerUp: false }, { authority: 'standby' }, []], // silent, not yet for the dead time
      // its own checks go on while it stands by (the hook hears of them), but it announces nothing
      [{ ...lost, witnessUp: false }, { authority: 'standby', phase: 'UP' }, [hook('UP', 'standby')]], // witness unreachable
      [{ ...lost, witnessSeesPrimary: true }, { authority: 'standby' }, []], // a partition
      [{ ...lost, witnessSeesPrimary: null }, { authority: 'standby' }, []], // no answer on it
      [
        { ...lost, witnessSeesPrimary: false, disabled: true },
        { authority: 'standby' },
        [hook('DISABLED', 'standby')],
      ],
    ]);
    expect(s.token).toBe(0);
  });

  it('promotes with token + 1 (persisted first), announces at once, whatever the rise count', () => {
    play(
      backup,
      [
        [{}, { authority: 'standby', token: 4 }, [{ kind: 'withdraw' }, hook('RISING', 'standby')]],
        [
          { ...lost, witnessSeesPrimary: false },
          { authority: 'active', phase: 'UP', token: 5 },
          [
            { kind: 'persist-token', token: 5 },
            { kind: 'promote', token: 5 },
            { kind: 'announce', med: 100 },
            hook('UP', 'active'),
          ],
        ],
        // promoted once: later observations do not promote again
        [{ ...lost, witnessSeesPrimary: false }, { authority: 'active', token: 5 }, []],
      ],
      4,
    );
  });

  it('learns a higher token while standing by (persisting it), and promotes past it', () => {
    play(backup, [
      [
        { knownToken: 7 },
        { token: 7 },
        [{ kind: 'persist-token', token: 7 }, { kind: 'withdraw' }, hook('RISING', 'standby')],
      ],
      [
        { ...lost, witnessSeesPrimary: false },
        { token: 8, authority: 'active' },
        [
          { kind: 'persist-token', token: 8 },
          { kind: 'promote', token: 8 },
          { kind: 'announce', med: 100 },
          hook('UP', 'active'),
        ],
      ],
    ]);
  });
});

describe('a primary fences itself when it loses both the backup and the witness', () => {
  const primary: ControllerConfig = { ...base, role: 'primary', rise: 1 };
  const up: Row = [
    {},
    { phase: 'UP', authority: 'active' },
    [{ kind: 'announce', med: 100 }, hook('UP', 'active')],
  ];

  it('starts fenced: announces only once the backup answers or the witness reaches it', () => {
    const cut = { peerUp: false, witnessUp: false };
    const rows: Row[] = [
      [cut, { authority: 'fenced', phase: 'UP' }, [{ kind: 'withdraw' }, hook('UP', 'fenced')]],
      [cut, { authority: 'fenced' }, []],
      [
        { peerUp: false, knownToken: 0, witnessSeesPrimary: true },
        { authority: 'active' },
        [{ kind: 'announce', med: 100 }, hook('UP', 'active')],
      ],
    ];
    play(primary, rows);
    const first = step(primary, initialState(primary, 0), obs(0, cut));
    expect(first.reasons.join(' ')).toMatch(/^fenced at start-up: waiting/);
    // restarted after a promotion it did not see: superseded at once, never announces
    play(primary, [
      [
        { peerUp: false, knownToken: 1, witnessSeesPrimary: true },
        { authority: 'superseded', token: 1 },
        [{ kind: 'withdraw' }, hook('UP', 'superseded')],
      ],
    ]);
  });

  it('losing one of them changes nothing; losing both for fenceAfterMs withdraws', () => {
    // rows are 200 ms apart; fenceAfterMs is 1000
    const rows: Row[] = [up, [{ peerUp: false }, { authority: 'active' }, []]];
    for (let i = 0; i < 6; i++) rows.push([{ peerUp: false }, { authority: 'active' }, []]); // the witness still answers
    rows.push([{ peerUp: false, witnessUp: false }, { authority: 'active', witnessDownSince: 1600 }, []]);
    for (let i = 0; i < 4; i++) rows.push([{ peerUp: false, witnessUp: false }, { authority: 'active' }, []]);
    rows.push([
      { peerUp: false, witnessUp: false },
      { authority: 'fenced', peerDownSince: 200 },
      [{ kind: 'withdraw' }, hook('UP', 'fenced')],
    ]);
    // still cut off: stays fenced, nothing sent
    rows.push([{ peerUp: false, witnessUp: false }, { authority: 'fenced' }, []]);
    // the witness is back but reports no token: not enough to know nothing was promoted
    rows.push([{ peerUp: false }, { authority: 'fenced' }, []]);
    // the witness knows no promotion past our token, but cannot reach us: it could still grant one
    rows.push([{ peerUp: false, knownToken: 0, witnessSeesPrimary: false }, { authority: 'fenced' }, []]);
    // the witness reaches us and vouches: no promotion past our token (and none while it reaches us)
    rows.push([
      { peerUp: false, knownToken: 0, witnessSeesPrimary: true },
      { authority: 'active' },
      [{ kind: 'announce', med: 100 }, hook('UP', 'active')],
    ]);
    play(primary, rows);
  });

  it('a witness that answers but cannot reach this site does not vouch for it: the backup lost too, it withdraws', () => {
    // its own replication died: no backup, and the witness probes the sender in vain
    const alone = { peerUp: false, witnessSeesPrimary: false };
    const rows: Row[] = [up];
    for (let i = 0; i < 5; i++) rows.push([alone, { authority: 'active' }, []]);
    rows.push([alone, { authority: 'fenced' }, [{ kind: 'withdraw' }, hook('UP', 'fenced')]]);
    const d = play(primary, rows);
    expect(d.witnessDownSince).toBe(200);
    // the backup alone lost, the witness reaching us: no fence
    const partition = { peerUp: false, witnessSeesPrimary: true };
    const kept: Row[] = [up];
    for (let i = 0; i < 10; i++) kept.push([partition, { authority: 'active', witnessDownSince: null }, []]);
    play(primary, kept);
  });

  it('the backup heard again un-fences; a higher token supersedes for good', () => {
    const cut = { peerUp: false, witnessUp: false };
    const rows: Row[] = [up];
    for (let i = 0; i < 5; i++) rows.push([cut, { authority: 'active' }, []]);
    rows.push([cut, { authority: 'fenced' }, [{ kind: 'withdraw' }, hook('UP', 'fenced')]]);
    rows.push([{}, { authority: 'active' }, [{ kind: 'announce', med: 100 }, hook('UP', 'active')]]);
    rows.push([
      { knownToken: 1 },
      { authority: 'superseded', token: 1 },
      [{ kind: 'withdraw' }, hook('UP', 'superseded')],
    ]);
    rows.push([{ knownToken: 1 }, { authority: 'superseded' }, []]);
    rows.push([{}, { authority: 'superseded' }, []]); // never back
    play(primary, rows);
  });
});

describe('invariants over random observation sequences', () => {
  const anyObs = fc.record({
    check: fc.constantFrom(true, false, null),
    disabled: fc.boolean(),
    exit: fc.constantFrom(false, false, false, true),
    peerUp: fc.boolean(),
    primaryLost: fc.boolean(),
    witnessUp: fc.boolean(),
    witnessSeesPrimary: fc.constantFrom(true, false, null),
    knownToken: fc.constantFrom(null, 0, 1, 2, 3),
  });

  it('only active announces; a promotion needs primaryLost and the witness’s no; the token never falls', () => {
    fc.assert(
      fc.property(
        fc.constantFrom<'primary' | 'backup'>('primary', 'backup'),
        fc.array(anyObs, { maxLength: 40 }),
        (role, list) => {
          const cfg: ControllerConfig = { ...base, role, rise: 2, fall: 2 };
          let s = initialState(cfg, 0);
          list.forEach((o, i) => {
            const full = obs(i * 300, o);
            const d = step(cfg, s, full);
            expect(d.state.token).toBeGreaterThanOrEqual(s.token);
            for (const a of d.actions) {
              if (a.kind === 'announce') expect(d.state.authority).toBe('active');
              if (a.kind === 'promote') {
                expect(full.primaryLost && full.witnessUp && full.witnessSeesPrimary === false).toBe(true);
                expect(a.token).toBe(
                  s.token +
                    (full.knownToken !== null && full.knownToken > s.token ? full.knownToken - s.token : 0) +
                    1,
                );
              }
            }
            // a persisted token comes before the promotion that uses it
            const p = d.actions.findIndex((a) => a.kind === 'promote');
            if (p >= 0) expect(d.actions.slice(0, p).some((a) => a.kind === 'persist-token')).toBe(true);
            if (d.state.phase === 'EXIT' || d.state.authority !== 'active') {
              expect(d.state.advertised.kind === 'announced').toBe(false);
            }
            if (s.authority === 'superseded') expect(d.state.authority).toBe('superseded');
            s = d.state;
          });
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('timingProblem', () => {
  const t = {
    peerSilenceMs: 600,
    fenceAfterMs: 900,
    primaryIntervalMs: 200,
    commandTimeoutMs: 500,
    deadTimeMs: 3000,
    marginMs: 250,
  };
  it('holds when the primary withdraws before the backup’s dead time, and says why not otherwise', () => {
    expect(timingProblem(t)).toBeUndefined();
    expect(timingProblem({ ...t, fenceAfterMs: 1500 })).toMatch(
      /silence 600 \+ fence 1500.*3000 ms: two sites could announce at once/,
    );
    expect(timingProblem({ ...t, deadTimeMs: 2450 })).toMatch(/after 2450 ms/);
    expect(timingProblem({ ...t, deadTimeMs: 2451 })).toBeUndefined();
  });
});
