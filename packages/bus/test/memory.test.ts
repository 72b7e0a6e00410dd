import { describe, expect, it } from 'vitest';
import { MemoryBus, MemoryStore, type WorkerInfo } from '@spinmesh/bus';
import { runBusContract } from './contract.js';

// Clients made with the same prefix share one store, like processes sharing one Redis.
const stores = new Map<string, MemoryStore>();

runBusContract(
  'MemoryBus',
  async (prefix) => {
    let store = stores.get(prefix);
    if (!store) stores.set(prefix, (store = new MemoryStore()));
    return new MemoryBus({ store });
  },
  async (prefix) => {
    stores.delete(prefix);
  },
);

describe('MemoryBus', () => {
  const info: WorkerInfo = { id: 'w', address: 'localhost:1', cores: 1, startedAt: 0, meta: {} };

  it('expires workers by its clock, checked on read', async () => {
    let now = 1_000_000;
    const bus = new MemoryBus({ now: () => now });
    await bus.registerWorker(info, 100);
    now += 99;
    expect(await bus.heartbeat('w', 100)).toBe(true);
    now += 100;
    expect(await bus.listWorkers()).toEqual([]);
    expect(await bus.heartbeat('w', 100)).toBe(false);
    await bus.close();
  });

  it('stamps records and events with its clock, and orders event ids within one ms', async () => {
    const bus = new MemoryBus({ now: () => 5000, maxEventsPerJob: 2 });
    const rec = await bus.createJob({ id: 'j' });
    expect(rec.createdAt).toBe(5000);
    const ids = [
      await bus.appendEvent('j', { type: 'a', at: 0 }),
      await bus.appendEvent('j', { type: 'b', at: 0 }),
    ];
    expect(ids).toEqual(['5000-1', '5000-2']);
    // maxEventsPerJob applies to every append, the creation event included.
    expect((await bus.readEvents('j')).map((e) => e.id)).toEqual(ids);
    await bus.close();
  });
});
