/**
 * Structured logs: pino, one JSON object per line on stderr (stdout stays free for command output).
 * Every line carries the daemon's role and name, so the two ends of a pair can be told apart when their
 * logs are collected together.
 */
import { pino } from 'pino';
import type { Log } from '../replication/sender.js';

/** A pino logger writing JSON lines to stderr. */
export function makeLogger(o: {
  level: string;
  role: 'send' | 'receive';
  name: string;
}): Log & { flush(): void } {
  const logger = pino(
    {
      level: o.level,
      base: { role: o.role, ...(o.name ? { name: o.name } : {}), pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    pino.destination({ fd: 2, sync: true }),
  );
  return logger;
}
