// The environment checks both services share.
import { describe, expect, it } from 'vitest';

import { isLoopbackListen } from '../src/index.js';

describe('isLoopbackListen', () => {
  it('tells loopback addresses from the rest', () => {
    const loopback = ['127.0.0.1:1', '127.255.0.3:1', '[::1]:1', '[0:0:0:0:0:0:0:1]:1'];
    const beyond = ['0.0.0.0:1', '[::]:1', '[::2]:1', '[::ffff:10.0.0.1]:1', 'example.org:1'];
    for (const a of [...loopback, 'localhost:1', '[::ffff:127.0.0.1]:1'])
      expect(isLoopbackListen(a), a).toBe(true);
    for (const a of beyond) expect(isLoopbackListen(a), a).toBe(false);
  });
});
