/**
 * Pausing the process that writes a replicated image, so a capture sees one point in time (Linux).
 *
 *   pauseProcess(pid) ──SIGSTOP──▶ poll /proc/PID/task/TID/stat until every thread is 'T' (or 't')
 *        │                         (0.2 ms apart, at most 1 s)
 *        ▼
 *   resume() ──SIGCONT──▶ the process runs again (idempotent)
 *
 * `kill(pid, SIGSTOP)` only queues the stop: a thread stops when it next returns to user space, and a
 * thread inside a write system call finishes that write first. Returning as soon as the signal is sent
 * would let a write in progress land during the capture, so the pause waits until the kernel reports
 * every thread of the process as stopped. From then on the process cannot change the file through a
 * system call or a shared mapping until it is resumed.
 *
 * The first 20 ms of polling sleep synchronously (0.2 ms at a time: a stop normally takes tens of
 * microseconds, and a timer cannot wait less than 1 ms); after that the poll yields to the event loop
 * every 1 ms, up to the 1 s limit. A process that was already stopped by someone else is resumed by
 * `resume()` all the same.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { RwanError } from '../errors.js';

/** Longest wait for the process to stop, in milliseconds. */
export const PAUSE_TIMEOUT_MS = 1000;

/** Polling interval of the synchronous phase, in milliseconds. */
const SPIN_MS = 0.2;

/** How long the poll spins synchronously before it yields to the event loop between polls. */
const SPIN_PHASE_MS = 20;

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** What /proc says about the threads of a process. */
type TaskState = 'stopped' | 'running' | 'gone';

/** The scheduler state letter of one /proc stat line (the field after `(comm)`), or undefined. */
function stateLetter(stat: string): string | undefined {
  const close = stat.lastIndexOf(')');
  return close < 0 ? undefined : stat.charAt(close + 2);
}

/**
 * 'stopped' when every live thread of `pid` is stopped, 'gone' when it has no live thread. Threads in
 * `stopped` were seen stopped by an earlier look of the same wait (a stopped thread stays so until
 * SIGCONT): their stat is not read again; those seen stopped now are added.
 */
function taskState(pid: number, stopped: Set<string>): TaskState {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return 'gone';
  }
  let live = 0;
  for (const tid of tids) {
    if (stopped.has(tid)) {
      live++;
      continue;
    }
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'latin1');
    } catch {
      continue; // the thread ended meanwhile
    }
    const s = stateLetter(stat);
    if (s === 'Z' || s === 'X' || s === 'x') continue; // an exited thread writes nothing
    live++;
    if (s !== 'T' && s !== 't') return 'running';
    stopped.add(tid);
  }
  return live === 0 ? 'gone' : 'stopped';
}

function gone(pid: number, cause?: unknown): RwanError {
  return new RwanError('RWAN_ERR_SOURCE', `process ${pid} does not exist (or has exited)`, {
    cause,
    details: { pid },
  });
}

/** Waits until every thread of `pid` is stopped; throws when it exits or the limit passes. */
async function waitStopped(pid: number): Promise<void> {
  const t0 = performance.now();
  const stopped = new Set<string>();
  for (;;) {
    const s = taskState(pid, stopped);
    if (s === 'stopped') return;
    if (s === 'gone') throw gone(pid);
    const elapsed = performance.now() - t0;
    if (elapsed > PAUSE_TIMEOUT_MS) {
      throw new RwanError('RWAN_ERR_SOURCE', `process ${pid} did not stop within ${PAUSE_TIMEOUT_MS} ms`, {
        details: { pid, timeoutMs: PAUSE_TIMEOUT_MS },
      });
    }
    if (elapsed < SPIN_PHASE_MS) Atomics.wait(sleeper, 0, 0, SPIN_MS);
    else await sleep(1);
  }
}

/** Sends `signal` to `pid` after checking the pid; errors as {@link pauseProcess} documents them. */
function signal(pid: number, sig: NodeJS.Signals | 0): void {
  if (!Number.isSafeInteger(pid) || pid <= 0) {
    throw new RwanError('RWAN_ERR_INVALID_VALUE', `pid must be a positive integer, got ${pid}`, {
      details: { pid },
    });
  }
  if (pid === process.pid) {
    throw new RwanError('RWAN_ERR_SOURCE', 'a process cannot pause itself for a capture', {
      details: { pid },
    });
  }
  try {
    process.kill(pid, sig);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ESRCH') throw gone(pid, err);
    throw new RwanError('RWAN_ERR_SOURCE', `process ${pid} cannot be signalled (${code ?? String(err)})`, {
      cause: err,
      details: { pid },
    });
  }
}

/**
 * Stops process `pid` (SIGSTOP) and waits until all its threads are really stopped, so that no write
 * of it can land while the caller reads its file. Always call the returned function (in a `finally`).
 * @returns `resume`: sends SIGCONT; idempotent, never throws (a process that exited meanwhile is fine)
 * @throws RwanError `RWAN_ERR_INVALID_VALUE` for a pid that is not a positive integer;
 *   `RWAN_ERR_SOURCE` when the process does not exist, cannot be signalled, is this process, exits
 *   while stopping or does not stop within {@link PAUSE_TIMEOUT_MS} (it is resumed before the throw)
 */
export async function pauseProcess(pid: number): Promise<() => void> {
  signal(pid, 'SIGSTOP');
  let resumed = false;
  const resume = (): void => {
    if (resumed) return;
    resumed = true;
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      // it exited: nothing to resume
    }
  };
  try {
    await waitStopped(pid);
  } catch (err) {
    resume();
    throw err;
  }
  return resume;
}

/**
 * Checks that `pid` names a process this one may pause (signal 0: nothing is sent).
 * @throws RwanError as {@link pauseProcess} does for the pid and the signal
 */
export function checkPausable(pid: number): void {
  signal(pid, 0);
}
