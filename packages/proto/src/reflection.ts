// gRPC server reflection (grpc.reflection.v1 and v1alpha), so that grpcurl and other tools can
// list and call the services without the .proto files. The descriptors come from
// descriptors/spinmesh.binpb, which `npm run generate` builds from proto/ with buf (comments
// included); test/generated.test.ts checks it is current.
import { readFileSync } from 'node:fs';
import type { Server } from '@grpc/grpc-js';
import { loadFileDescriptorSetFromBuffer } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';

/** The FileDescriptorSet of every .proto file in proto/. */
export const DESCRIPTOR_SET_URL = new URL('../descriptors/spinmesh.binpb', import.meta.url);

/**
 * Adds the reflection services to `server`, describing the named services (fully qualified,
 * e.g. 'spinmesh.v1.JobService') and every message they use.
 */
export function addReflectionService(server: Pick<Server, 'addService'>, services: string[]): void {
  const pkg = loadFileDescriptorSetFromBuffer(readFileSync(DESCRIPTOR_SET_URL));
  new ReflectionService(pkg, { services }).addToServer(server);
}
