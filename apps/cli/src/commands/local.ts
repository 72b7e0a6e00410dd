// Commands on model files that need no coordinator: info, export-npy, import-npy.
import { loadKernels } from '@spinmesh/kernels';
import {
  decodeSequenceModel,
  exportNpyDir,
  importNpyDir,
  isSequenceModel,
  loadModel,
  readUserFile,
  saveModel,
} from '@spinmesh/model';
import type { Context } from '../context.js';
import { UsageError } from '../errors.js';

export function info(ctx: Context): number {
  const modelPath = ctx.args.positional[1];
  if (!modelPath) throw new UsageError('info needs <model>');
  const bytes = readUserFile(modelPath);
  if (isSequenceModel(bytes)) {
    const { file, model } = decodeSequenceModel(bytes);
    const o = {
      kind: 'sequence model (dynamic Boltzmann machine)',
      spec: file.spec,
      units: model.units,
      synapses: model.synapses().pre.length,
      evaluation: file.evaluation,
    };
    process.stdout.write(`${ctx.out.json ? JSON.stringify(o) : JSON.stringify(o, null, 2)}\n`);
    return 0;
  }
  const m = loadModel(modelPath, loadKernels('portable'));
  const arrays = m.network.parameters().map((a) => `${a.name} [${a.shape.join('x')}]`);
  const o = {
    created: m.created,
    network: m.network.spec,
    parameters: arrays,
    state: Object.keys(m.state),
    training: m.training,
    meta: m.meta,
  };
  // One object either way; --json writes it on one line.
  process.stdout.write(`${ctx.out.json ? JSON.stringify(o) : JSON.stringify(o, null, 2)}\n`);
  return 0;
}

export function exportNpy(ctx: Context): number {
  const [, model, dir] = ctx.args.positional;
  if (!model || !dir) throw new UsageError('export-npy needs <model> <dir>');
  exportNpyDir(loadModel(model, loadKernels('portable')).network, dir);
  ctx.out.say(`arrays written to ${dir}`);
  ctx.out.emit({ type: 'export', model, dir });
  return 0;
}

export function importNpy(ctx: Context): number {
  const [, dir, model] = ctx.args.positional;
  if (!dir || !model) throw new UsageError('import-npy needs <dir> <model>');
  saveModel(model, importNpyDir(dir, loadKernels('portable')), { meta: { importedFrom: dir } });
  ctx.out.say(`model written to ${model}`);
  ctx.out.emit({ type: 'import', dir, model });
  return 0;
}
