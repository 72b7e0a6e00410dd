// Child process of `npm run bench -- scaling`: echoes length-prefixed frames on a raw TCP
// connection, to set grpc-js's per-frame and per-byte costs beside a plain socket's. argv: the
// parent's port.
import { connect } from 'node:net';
import { FrameReader, frameHeader } from './_frames.js';

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || !process.send) throw new Error('run by bench scaling only');
const socket = connect(port, '127.0.0.1');
socket.setNoDelay(true);
const reader = new FrameReader((frame) => {
  socket.cork();
  socket.write(frameHeader(frame.length));
  socket.write(frame);
  socket.uncork();
});
socket.on('data', (chunk: Buffer) => reader.push(chunk));
process.on('disconnect', () => socket.destroy());
