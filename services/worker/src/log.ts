// Structured logs: one JSON line per event on stdout, with the time, the level as a word, the
// service ('worker'), its pid, the worker id and, where there is one, the job id (pino); the
// coordinator writes the same format.
import { pino, type Logger } from 'pino';

export type { Logger };

/** The worker's root logger; child loggers add `job`, `shard` and `generation`. */
export function createLogger(
  workerId: string,
  level: string,
  destination?: pino.DestinationStream,
): Logger {
  const opts: pino.LoggerOptions = {
    level,
    base: { service: 'worker', pid: process.pid, worker: workerId },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  return destination ? pino(opts, destination) : pino(opts);
}

/** A logger that drops everything (library use, tests). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
