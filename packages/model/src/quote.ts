// Messages that quote what a caller sent must stay short whatever was sent: an error's text
// travels back in a gRPC trailer, and an over-long one replaces the real status with
// RESOURCE_EXHAUSTED (and a log line with megabytes).

/** Longest stretch of caller input a message quotes, in characters. */
export const QUOTE_CHARS = 60;

/**
 * `value` as text for a message: itself when it has at most `max` characters, else its first
 * `max` characters, '…' and its length ('aaaa…(100000 chars)'). Control characters become '?'
 * so that a message stays one line.
 */
export function quote(value: unknown, max = QUOTE_CHARS): string {
  const s = typeof value === 'string' ? value : String(value);
  const clean = (t: string): string => t.replace(/[\u0000-\u001f\u007f]/g, '?');
  if (s.length <= max) return clean(s);
  return `${clean(s.slice(0, max))}…(${s.length} chars)`;
}
