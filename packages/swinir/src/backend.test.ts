import * as tf from '@tensorflow/tfjs';
import { BACKEND_NAMES, initBackend, wasmBinaryDir } from './backend';
import * as fs from 'node:fs';

afterAll(async () => {
  await initBackend('wasm');
});

describe('initBackend', () => {
  it('loads wasm from the installed package folder', async () => {
    expect(fs.existsSync(`${wasmBinaryDir()}tfjs-backend-wasm-simd.wasm`)).toBe(true);
    expect(await initBackend('wasm')).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    expect(Array.from(tf.tidy(() => tf.add(tf.tensor1d([1, 2]), 1).dataSync()))).toEqual([2, 3]);
  });

  it('loads cpu on request', async () => {
    expect(await initBackend('cpu')).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
  });

  it('an unavailable native backend is an error naming it and the choices', async () => {
    let native = false;
    try {
      require.resolve('@tensorflow/tfjs-node');
      native = true;
    } catch {
      // not installed here, the usual case
    }
    if (native) return;
    await expect(initBackend('tfjs-node')).rejects.toThrow(
      /backend 'tfjs-node' cannot be loaded: .*\(choices: tfjs-node-gpu, tfjs-node, wasm, cpu\)/);
    await expect(initBackend('nope' as never)).rejects.toThrow("unknown backend 'nope' (choices: tfjs-node-gpu, tfjs-node, wasm, cpu)");
  });

  it('the default falls through the native bindings to the first that loads', async () => {
    const used = await initBackend();
    expect(used).toBe(tf.getBackend());
    expect(['tensorflow', 'wasm']).toContain(used);
    expect(BACKEND_NAMES).toEqual(['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu']);
  });
});
