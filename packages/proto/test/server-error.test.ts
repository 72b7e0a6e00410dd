import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { MAX_DETAILS_CHARS, ServerError, capDetails, toServiceError } from '../src/index.js';

describe('ServerError', () => {
  it('keeps a message of up to MAX_DETAILS_CHARS as it is', () => {
    const m = 'spec.name must be a non-empty string';
    expect(new ServerError(grpc.status.INVALID_ARGUMENT, m).details).toBe(m);
    expect(capDetails('x'.repeat(MAX_DETAILS_CHARS))).toBe('x'.repeat(MAX_DETAILS_CHARS));
  });

  it('cuts a longer one, saying how long it was, so that the status still fits a trailer', () => {
    const err = new ServerError(grpc.status.INVALID_ARGUMENT, `bad: ${'x'.repeat(100_000)}`);
    expect(err.details).toHaveLength(MAX_DETAILS_CHARS);
    expect(err.details).toMatch(/^bad: x+…\(100005 chars\)$/);
    const sent = toServiceError(err, 'SubmitJob');
    expect([sent.code, sent.details]).toEqual([grpc.status.INVALID_ARGUMENT, err.details]);
  });
});
