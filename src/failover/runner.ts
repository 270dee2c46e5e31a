/**
 * One site's failover controller at work: each tick observes (the replication daemon's /status, the
 * witness, its own check, the disable file), decides (controller.ts `step`), and carries out the
 * actions in order, logging the decision with its reasons.
 *
 *   persist-token + promote   first the witness must grant the token (witness.ts: it cannot reach the
 *                             primary either, and the token is the next one); refused, the site stays
 *                             standby and learns the witness's token. Granted: the token file is
 *                             written, the receiver ends the stream at its last complete epoch (POST
 *                             /promote), the promote command runs, then the routes are announced.
 *   announce / withdraw       every route, through ExaBGP; a command that fails leaves the routes as
 *                             they were sent, so the next tick tries again (and reports it)
 *   hook                      the state hook, with STATE, AUTHORITY and TOKEN in its environment
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import {
  type Action,
  type ControllerConfig,
  type ControllerState,
  type Decision,
  initialState,
  step,
} from './controller.js';
import { type DaemonView, observeDaemon, promoteDaemon } from './daemon-view.js';
import { announceCommand, type Route, withdrawCommand } from './routes.js';
import { askWitness, readToken, requestPromotion, type WitnessView, writeToken } from './witness.js';

export interface RunnerOptions {
  cfg: ControllerConfig;
  /** This site's name (for the witness and the log). */
  site: string;
  routes: Route[];
  /** ExaBGP: the pipe client (exabgp-pipe.ts) or the process API (exabgp-process.ts). */
  exabgp: { command(line: string): Promise<string[]> };
  /** The local replication daemon's HTTP endpoint (http://host:port). */
  daemonUrl: string;
  /** The witness (http://host:port); without one a backup never promotes. */
  witnessUrl: string | null;
  tokenFile: string;
  /** Run by `sh -c`; exit 0 = healthy. */
  checkCommand?: string;
  disableFile?: string;
  /**
   * Run by `sh -c` on promotion (start the service from the replica), with REMUS_FAILOVER_TOKEN and
   * REMUS_FAILOVER_EPOCH (the replica's epoch) set.
   */
  promoteCommand?: string;
  /** Run by `sh -c` on every change of phase or authority, with STATE, AUTHORITY and TOKEN set. */
  hookCommand?: string;
  /** Each probe and command's limit, ms. */
  timeoutMs: number;
  /**
   * Re-send what is advertised when nothing was sent for this long, ms (0: never): an ExaBGP that
   * restarted between two commands has forgotten the routes, and the pipe cannot tell.
   */
  refreshMs?: number;
  /** One JSON-able entry per decision. */
  log: (entry: Record<string, unknown>) => void;
}

const round = (ms: number) => Math.round(ms * 10) / 10;

/** `sh -c command` with `env`, resolved with its exit code (null: killed at the timeout). */
function sh(command: string, env: Record<string, string>, timeoutMs: number): Promise<number | null> {
  return new Promise((resolve) => {
    const child = spawn('sh', ['-c', command], { env: { ...process.env, ...env }, stdio: 'ignore' });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', () => resolve(null));
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

export class Runner {
  /** Why the routes must be sent again at the next tick (resync()), or undefined. */
  private resend: string | undefined;
  /** When routes were last sent with success (performance.now()). */
  private sentAt = performance.now();

  private constructor(
    private readonly o: RunnerOptions,
    public state: ControllerState,
  ) {}

  /**
   * Send what is advertised again at the next tick, because `why` (a BGP session came up, ExaBGP came
   * back): ExaBGP forgets routes sent to an earlier instance of it.
   */
  resync(why: string): void {
    this.resend = why;
  }

  /** A runner starting from the token in its file. */
  static async create(o: RunnerOptions): Promise<Runner> {
    return new Runner(o, initialState(o.cfg, await readToken(o.tokenFile)));
  }

  /** Observe, decide, act. `exit`: the site is stopping (everything is withdrawn). */
  async tick(
    exit = false,
  ): Promise<Decision & { daemon: DaemonView; witness: WitnessView | null; failed: boolean }> {
    const o = this.o;
    const started = performance.now();
    const [daemon, witness, check] = await Promise.all([
      observeDaemon(o.daemonUrl, o.timeoutMs),
      o.witnessUrl === null ? Promise.resolve(null) : askWitness(o.witnessUrl, o.timeoutMs),
      o.checkCommand === undefined
        ? Promise.resolve(null)
        : sh(o.checkCommand, {}, o.timeoutMs).then((c) => c === 0),
    ]);
    const observed = performance.now();
    const before = this.state;
    const d = step(o.cfg, before, {
      now: observed,
      check,
      disabled: o.disableFile !== undefined && existsSync(o.disableFile),
      exit,
      peerUp: daemon.peerUp,
      primaryLost: daemon.primaryLost,
      witnessUp: witness?.witnessUp ?? false,
      witnessSeesPrimary: witness?.witnessSeesPrimary ?? null,
      knownToken: witness?.knownToken ?? null,
    });
    const reasons = [...d.reasons];
    const refresh =
      this.resend ??
      (o.refreshMs && observed - this.sentAt >= o.refreshMs
        ? `nothing sent for ${o.refreshMs} ms`
        : undefined);
    const sends = d.actions.some((a) => a.kind === 'announce' || a.kind === 'withdraw');
    if (refresh !== undefined && !sends) {
      const adv = d.state.advertised;
      if (adv.kind === 'none')
        this.resend = undefined; // nothing was ever sent
      else {
        d.actions.push(adv.kind === 'announced' ? { kind: 'announce', med: adv.med } : { kind: 'withdraw' });
        reasons.push(`sending the routes again: ${refresh}`);
      }
    }
    const done: Action[] = [];
    let failed = false;
    let state = d.state;
    /** ms per step of the tick (observe, grant, token, promote, routes), for the log. */
    const steps: Record<string, number> = { observe: round(observed - started) };
    let at = observed;
    const timed = (name: string) => {
      const now = performance.now();
      steps[name] = round((steps[name] ?? 0) + now - at);
      at = now;
    };
    for (const a of d.actions) {
      if (a.kind === 'persist-token') {
        if (d.actions.some((x) => x.kind === 'promote')) {
          const grant =
            o.witnessUrl === null
              ? { granted: false, token: before.token, reason: 'no witness configured' }
              : await requestPromotion(o.witnessUrl, a.token, o.site, o.timeoutMs);
          if (!grant.granted) {
            reasons.push(`the witness did not grant promotion ${a.token}: ${grant.reason}`);
            state = {
              ...before,
              token: Math.max(before.token, grant.token),
              peerDownSince: d.state.peerDownSince,
              witnessDownSince: d.state.witnessDownSince,
            };
            if (state.token > before.token) await writeToken(o.tokenFile, state.token);
            break;
          }
          timed('grant');
        }
        await writeToken(o.tokenFile, a.token);
        timed('token');
      } else if (a.kind === 'promote') {
        // the receiver first: the replica stops at its last complete epoch before the service starts
        const ended = await promoteDaemon(o.daemonUrl, a.token, o.timeoutMs);
        reasons.push(
          ended.ok
            ? `the replication daemon ended the stream at epoch ${ended.epoch ?? 'none'}`
            : `the replication daemon could not be told to end the stream: ${ended.reason}`,
        );
        if (o.promoteCommand !== undefined) {
          const env: Record<string, string> = { REMUS_FAILOVER_TOKEN: String(a.token) };
          if (ended.ok && ended.epoch !== null) env.REMUS_FAILOVER_EPOCH = String(ended.epoch);
          const code = await sh(o.promoteCommand, env, o.timeoutMs);
          reasons.push(`promote command exited ${code ?? 'by timeout'}`);
        }
        timed('promote');
      } else if (a.kind === 'announce' || a.kind === 'withdraw') {
        try {
          for (const r of o.routes) {
            await o.exabgp.command(
              a.kind === 'announce' ? announceCommand(r, { med: a.med }) : withdrawCommand(r),
            );
          }
        } catch (err) {
          // a change is made again at the next tick (the state says it was not), a resync too
          reasons.push(`ExaBGP: ${(err as Error).message}; retrying at the next tick`);
          state = { ...state, advertised: before.advertised };
          failed = true;
          continue;
        }
        timed('routes');
        // everything advertised went out, to whichever ExaBGP answers now (a reopen during it included)
        this.sentAt = performance.now();
        this.resend = undefined;
      } else if (a.kind === 'hook' && o.hookCommand !== undefined) {
        void sh(
          o.hookCommand,
          { STATE: a.phase, AUTHORITY: a.authority, TOKEN: String(state.token) },
          o.timeoutMs,
        );
      }
      done.push(a);
    }
    this.state = state;
    o.log({
      site: o.site,
      phase: state.phase,
      authority: state.authority,
      token: state.token,
      actions: done,
      failed,
      reasons,
      daemon: daemon.detail,
      witness: witness,
      /** How long the tick took, observation included, ms. */
      ms: round(performance.now() - started),
      ...(done.length > 0 ? { steps } : {}),
    });
    return { ...d, state, actions: done, reasons, daemon, witness, failed };
  }
}
