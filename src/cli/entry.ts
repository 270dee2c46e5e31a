/**
 * What the command-line programs share around commander: running a program with our exit statuses
 * and error output, and telling whether a module is the process's entry point.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type Command, CommanderError } from 'commander';
import { isRwanError } from '../errors.js';

/** Where a program writes; tests pass buffers. */
export interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
}

/** The process's stdout and stderr. */
export const processIo: Io = { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) };

/**
 * Parse `argv` with `program` (which must have exitOverride()) and return the exit status: `ok()`
 * after a successful run, 0 for --help/--version, 2 for a commander usage error (already printed),
 * the error's status for a RwanError (printed as `NAME: CODE: message`, or as JSON with --json),
 * 70 for anything else.
 */
export async function runProgram(
  name: string,
  program: Command,
  argv: readonly string[],
  io: Io,
  ok: () => number = () => 0,
): Promise<number> {
  try {
    await program.parseAsync(argv, { from: 'user' });
    return ok();
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0)
        return 0;
      return 2; // commander printed the message already
    }
    if (isRwanError(err)) {
      io.err(
        argv.includes('--json')
          ? `${JSON.stringify({ error: err.toJSON() })}\n`
          : `${name}: ${err.code}: ${err.message}\n`,
      );
      return err.exitCode;
    }
    io.err(`${name}: RWAN_ERR_INTERNAL: ${(err as Error).stack ?? String(err)}\n`);
    return 70;
  }
}

/** True when the module at `moduleUrl` (its import.meta.url) is the script node was started with. */
export function isEntryPoint(moduleUrl: string): boolean {
  try {
    return realpathSync(process.argv[1] ?? '') === realpathSync(fileURLToPath(moduleUrl));
  } catch {
    return false;
  }
}

/**
 * When the module at `moduleUrl` is the process's entry point: run `main` on the command line and exit
 * with its status. A reader that closes stdout early (`remus-plan --help | head`) ends the program
 * quietly instead of with an EPIPE stack. `exitAfterMs`: exit that long after `main` returns even if
 * a handle is still open (daemons must leave nothing running).
 */
export function runIfEntryPoint(
  moduleUrl: string,
  main: (argv: readonly string[]) => Promise<number>,
  options: { exitAfterMs?: number } = {},
): void {
  if (!isEntryPoint(moduleUrl)) return;
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
  });
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
    if (options.exitAfterMs !== undefined) setTimeout(() => process.exit(code), options.exitAfterMs).unref();
  });
}
