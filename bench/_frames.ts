// Length-prefixed frames on a byte stream (the scaling benchmark's raw-socket transport): a
// 4-byte little-endian length, then the bytes. Chunks are joined once per frame, not per chunk.
export class FrameReader {
  private chunks: Buffer[] = [];
  private have = 0;

  constructor(private readonly onFrame: (frame: Buffer) => void) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.have += chunk.length;
    for (;;) {
      if (this.have < 4) return;
      if (this.chunks[0]!.length < 4) this.chunks = [Buffer.concat(this.chunks)];
      const len = this.chunks[0]!.readUInt32LE(0);
      if (this.have < 4 + len) return;
      const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
      this.onFrame(all.subarray(4, 4 + len));
      const rest = all.subarray(4 + len);
      this.chunks = rest.length ? [rest] : [];
      this.have = rest.length;
    }
  }
}

export function frameHeader(len: number): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32LE(len, 0);
  return h;
}
