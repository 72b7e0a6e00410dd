// Child process of `npm run bench -- peer-latency`: a PeerServer that answers every frame with a
// frame of its own over a PeerLink back to the parent. argv: parent's address.
import { PeerLink, PeerServer, type SpinBlock } from '@spinmesh/worker';

const parent = process.argv[2];
if (!parent || !process.send) throw new Error('run by bench peer-latency only');
const link = new PeerLink({ address: parent, jobId: 'bench', generation: 1, fromShard: 1 });
const server = await PeerServer.start({
  jobId: 'bench',
  generation: 1,
  health: false,
  onFrame: (f) => {
    const echo: SpinBlock = { ...f, unitStart: 0 };
    void link.send(echo);
  },
});
process.send(server.address);
process.on('disconnect', () => {
  void Promise.all([link.close(), server.close()]).then(() => process.exit(0));
});
