// The worker's job kinds. A new kind: its module here, one line in `kinds`, and its shared half
// in @spinmesh/cluster's JOB_KINDS.
import type { KindName } from '@spinmesh/cluster';

import { boltzmann } from './boltzmann.js';
import { hebbian } from './hebbian.js';
import type { WorkerKind } from './kind.js';
import { stdp } from './stdp.js';

export const kinds: Readonly<Record<KindName, WorkerKind>> = { boltzmann, hebbian, stdp };

export type { ShardCounts, ShardHost, ShardRunner, WorkerKind } from './kind.js';
