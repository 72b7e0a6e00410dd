// Structured JSON logs (pino), one object per line on stdout, in the worker's format: the time,
// the level as a word, the service ('coordinator') and its pid; per-job lines carry the job id.
import pino, { type Logger } from 'pino';

export type { Logger };

/** The coordinator's logger. Writes synchronously, so nothing is lost when the process exits. */
export function createLogger(level: string): Logger {
  return pino(
    {
      level,
      base: { service: 'coordinator', pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ dest: 1, sync: true }),
  );
}
