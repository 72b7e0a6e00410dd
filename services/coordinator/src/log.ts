// Structured JSON logs (pino), one object per line on stdout, with the service name; per-job
// lines carry the job id.
import pino, { type Logger } from 'pino';

export type { Logger };

/** The coordinator's logger. Writes synchronously, so nothing is lost when the process exits. */
export function createLogger(level: string): Logger {
  return pino(
    {
      level,
      base: { service: 'spinmesh-coordinator', pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    pino.destination({ dest: 1, sync: true }),
  );
}
