/**
 * One error taxonomy for the whole project. Every error a user can provoke carries a stable `code`
 * (`RWAN_ERR_*`) and the process exit status the CLIs use for it. Tests assert on `code`, never on text.
 */

/** Stable error codes and the exit status each maps to. Listed in the README. */
export const ErrorCodes = {
  /** A command-line value or a file field could not be parsed as the unit it needs (`100Mbit/s`, `25ms`). */
  RWAN_ERR_INVALID_UNIT: 2,
  /** A value parsed but is out of range (zero, negative, NaN, a percentage above 100 %, an empty range). */
  RWAN_ERR_INVALID_VALUE: 2,
  /** Options that cannot be used together, or a required option that is missing. */
  RWAN_ERR_USAGE: 2,
  /** An input file is not in any format we read, or is malformed (bad JSON, bad CSV row, wrong field type). */
  RWAN_ERR_INVALID_INPUT: 3,
  /** An input file lacks a field the planner needs (no measurements, no link bandwidth). */
  RWAN_ERR_MISSING_FIELD: 3,
  /** A file could not be read or written. */
  RWAN_ERR_IO: 4,
  /** QMP: connecting, the greeting, a command error reply, or an unexpected reply. */
  RWAN_ERR_QMP: 5,
  /** QMP: no reply or no finished measurement within the time limit. */
  RWAN_ERR_QMP_TIMEOUT: 5,
  /** `--fail-on-infeasible`: a guest or the fleet does not fit the link or the budget. */
  RWAN_ERR_INFEASIBLE: 10,
  /** A bug: something the code believed impossible happened. */
  RWAN_ERR_INTERNAL: 70,
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

/** Options accepted by {@link RwanError}. */
export interface RwanErrorOptions {
  /** The lower-level error this one explains. */
  cause?: unknown;
  /** Structured context (file, line, field, value) for logs and `--json` error output. */
  details?: Record<string, unknown>;
}

/** Base class of every error the project raises on purpose. */
export class RwanError extends Error {
  readonly code: ErrorCode;
  readonly exitCode: number;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: RwanErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RwanError';
    this.code = code;
    this.exitCode = ErrorCodes[code];
    this.details = options.details ?? {};
  }

  /** A plain object for `--json` error output. */
  toJSON(): { code: ErrorCode; message: string; details: Record<string, unknown> } {
    return { code: this.code, message: this.message, details: this.details };
  }
}

/** True when `err` is one of ours (optionally with the given code). */
export function isRwanError(err: unknown, code?: ErrorCode): err is RwanError {
  return err instanceof RwanError && (code === undefined || err.code === code);
}
