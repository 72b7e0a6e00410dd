// Requests that cannot be decoded answered INVALID_ARGUMENT, naming the field, instead of
// grpc-js's INTERNAL "Error deserializing request": a uint64 above 2^53 - 1 (the generated code
// keeps uint64 as number and throws on a larger value), bytes that are not protobuf, and a
// string field that is not valid UTF-8 (which the generated code would silently turn into
// U+FFFD).
import { readFileSync } from 'node:fs';
import type * as grpc from '@grpc/grpc-js';
import { status as Status } from '@grpc/grpc-js';
import { loadFileDescriptorSetFromBuffer } from '@grpc/proto-loader';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import { DESCRIPTOR_SET_URL } from './reflection.js';
import { ServerError } from './server-error.js';

/** What a handler receives instead of a request that could not be decoded. */
class UndecodableRequest {
  constructor(readonly error: ServerError) {}
}

interface FieldInfo {
  name: string;
  type: string;
}

/** Top-level fields by number of each method's request type, by method path. */
let requestFields: Map<string, Map<number, FieldInfo>> | null = null;

function fieldsOf(path: string): Map<number, FieldInfo> {
  if (!requestFields) {
    requestFields = new Map();
    const pkg = loadFileDescriptorSetFromBuffer(readFileSync(DESCRIPTOR_SET_URL));
    for (const def of Object.values(pkg)) {
      if ('format' in def) continue; // a message or enum, not a service
      for (const m of Object.values(def as grpc.ServiceDefinition)) {
        const type = (m as unknown as { requestType?: { type?: unknown } }).requestType?.type as
          { field?: { name: string; number: number; type: string }[] } | undefined;
        const fields = new Map<number, FieldInfo>();
        for (const f of type?.field ?? []) fields.set(f.number, { name: f.name, type: f.type });
        requestFields.set(m.path, fields);
      }
    }
  }
  return requestFields.get(path) ?? new Map();
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const INTEGER_TYPES = new Set(['TYPE_UINT64', 'TYPE_INT64', 'TYPE_SINT64', 'TYPE_FIXED64']);

/**
 * What is wrong with the top-level fields of a request (`null`: nothing found): the first
 * string that is not UTF-8 or 64-bit integer beyond 2^53 - 1 in magnitude, by field name.
 */
function inspect(path: string, bytes: Uint8Array): string | null {
  const fields = fieldsOf(path);
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [no, wire] = reader.tag();
    const f = fields.get(no);
    if (f?.type === 'TYPE_STRING' && wire === WireType.LengthDelimited) {
      try {
        UTF8.decode(reader.bytes());
      } catch {
        return `${f.name} is not valid UTF-8`;
      }
    } else if (f && INTEGER_TYPES.has(f.type) && wire === WireType.Varint) {
      const v = BigInt(f.type === 'TYPE_SINT64' ? reader.sint64() : reader.uint64());
      if (v > MAX_SAFE || -v > MAX_SAFE)
        return `${f.name} must be at most 2^53 - 1 = ${Number.MAX_SAFE_INTEGER} in magnitude`;
    } else reader.skip(wire, no);
  }
  return null;
}

/** inspect(), or null where the bytes are too broken to walk. */
function problemOf(path: string, bytes: Uint8Array): string | null {
  try {
    return inspect(path, bytes);
  } catch {
    return null;
  }
}

/**
 * `definition` and `impl` with decoding that never throws: a request that cannot be decoded
 * (or holds a string field that is not UTF-8) reaches no handler, and its caller gets
 * INVALID_ARGUMENT naming the field. Methods whose requests stream keep grpc-js's own handling.
 */
export function guardDecoding<
  D extends grpc.ServiceDefinition,
  I extends grpc.UntypedServiceImplementation,
>(definition: D, impl: I): [D, I] {
  const defs: Record<string, unknown> = {};
  const impls: Record<string, unknown> = {};
  for (const [key, method] of Object.entries(definition)) {
    const handler = impl[key];
    if (method.requestStream || handler === undefined) {
      defs[key] = method;
      if (handler !== undefined) impls[key] = handler;
      continue;
    }
    defs[key] = {
      ...method,
      requestDeserialize: (bytes: Buffer): unknown => {
        let decoded: unknown;
        try {
          decoded = method.requestDeserialize(bytes);
        } catch {
          const problem = problemOf(method.path, bytes) ?? 'the request is not a valid message';
          return new UndecodableRequest(new ServerError(Status.INVALID_ARGUMENT, problem));
        }
        const problem = problemOf(method.path, bytes);
        return problem === null
          ? decoded
          : new UndecodableRequest(new ServerError(Status.INVALID_ARGUMENT, problem));
      },
    };
    impls[key] = method.responseStream
      ? (call: grpc.ServerWritableStream<unknown, unknown>): void => {
          if (call.request instanceof UndecodableRequest)
            call.emit('error', call.request.error.toServiceError());
          else (handler as grpc.handleServerStreamingCall<unknown, unknown>)(call);
        }
      : (
          call: grpc.ServerUnaryCall<unknown, unknown>,
          callback: grpc.sendUnaryData<unknown>,
        ): void => {
          if (call.request instanceof UndecodableRequest)
            callback(call.request.error.toServiceError(), null);
          else (handler as grpc.handleUnaryCall<unknown, unknown>)(call, callback);
        };
  }
  return [defs as D, impls as I];
}
