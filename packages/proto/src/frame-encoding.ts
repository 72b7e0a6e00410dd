// Encoding the peer frames, which run to hundreds of kilobytes (partial fields) many times a
// second: one writer for the process, whose buffer grows once to the largest frame instead of
// from nothing for every frame (a generated encode() starts a new writer each call, and the
// buffers it outgrows are garbage the collector then stops the worker for).
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { SpinFrame } from './gen/spinmesh/v1/spins.js';

const writer = new BinaryWriter();

/** SpinFrame.encode(frame).finish(), on the process's one writer (the result is a copy). */
export function encodeSpinFrame(frame: SpinFrame): Uint8Array {
  return SpinFrame.encode(frame, writer).finish();
}
