import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { SwinIRError } from './errors';

export type BackendName = 'tfjs-node-gpu' | 'tfjs-node' | 'wasm' | 'cpu';
/** In the order the default tries them. */
export const BACKEND_NAMES: readonly BackendName[] = ['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'];

/** The folder holding the installed tfjs-backend-wasm .wasm binaries, with a trailing separator. */
export function wasmBinaryDir(): string {
  return path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + path.sep;
}

let wasmPathsSet = false;

async function tryNode(pkg: '@tensorflow/tfjs-node-gpu' | '@tensorflow/tfjs-node'): Promise<string> {
  // Optional native bindings: not dependencies of this repo, so never imported statically. The variable
  // keeps TypeScript from resolving the module.
  const moduleName: string = pkg;
  await import(moduleName);
  if (!(await tf.setBackend('tensorflow'))) throw new Error(`${pkg} loaded but its 'tensorflow' backend failed to initialise`);
  return 'tensorflow';
}

async function tryWasm(): Promise<string> {
  if (!wasmPathsSet) {
    setWasmPaths(wasmBinaryDir());
    wasmPathsSet = true;
  }
  if (!(await tf.setBackend('wasm'))) throw new Error('the wasm backend failed to initialise');
  return 'wasm';
}

async function tryCpu(): Promise<string> {
  if (!(await tf.setBackend('cpu'))) throw new Error('the cpu backend failed to initialise');
  return 'cpu';
}

const LOADERS: Record<BackendName, () => Promise<string>> = {
  'tfjs-node-gpu': () => tryNode('@tensorflow/tfjs-node-gpu'),
  'tfjs-node': () => tryNode('@tensorflow/tfjs-node'),
  wasm: tryWasm,
  cpu: tryCpu,
};

/**
 * Selects the tfjs backend and returns the name tfjs reports for it ('tensorflow', 'wasm' or 'cpu').
 * Without a name, tries tfjs-node-gpu, tfjs-node, wasm, then cpu. A named backend that cannot load
 * is an error naming it and the choices.
 */
export async function initBackend(name?: BackendName): Promise<string> {
  if (name !== undefined) {
    const loader = LOADERS[name as BackendName];
    if (!loader) throw new SwinIRError(`unknown backend '${name}' (choices: ${BACKEND_NAMES.join(', ')})`);
    try {
      const used = await loader();
      await tf.ready();
      return used;
    } catch (err) {
      throw new SwinIRError(`backend '${name}' cannot be loaded: ${(err as Error).message} (choices: ${BACKEND_NAMES.join(', ')})`);
    }
  }
  const failures: string[] = [];
  for (const candidate of BACKEND_NAMES) {
    try {
      const used = await LOADERS[candidate]();
      await tf.ready();
      return used;
    } catch (err) {
      failures.push(`${candidate}: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  throw new SwinIRError(`no tfjs backend could be loaded (${failures.join('; ')})`);
}
