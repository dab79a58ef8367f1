import { presetConfig } from '@harmoq/swinir';
import { swinirFlops } from './index';

describe('swinirFlops', () => {
  test('SwinIR-light x2 on 64x64: the hand count', () => {
    // Per pixel: conv_first 2*9*3*60; 24 blocks of 16*E^2 + 4*64*E; 5 convs 60->60; head 60->12.
    const E = 60;
    const perPixel = 2 * 9 * 3 * E + 24 * (16 * E * E + 4 * 64 * E) + 5 * 2 * 9 * E * E + 2 * 9 * E * 12;
    expect(swinirFlops(presetConfig('swinir-light', 2), 64, 64)).toBe(perPixel * 64 * 64);
    // Sizes are padded to the window first: 57x61 runs as 64x64.
    expect(swinirFlops(presetConfig('swinir-light', 2), 57, 61)).toBe(perPixel * 64 * 64);
  });

  test('classical x4 counts the head at each upsampled resolution', () => {
    const cfg = presetConfig('swinir-classical', 4);
    const x2 = presetConfig('swinir-classical', 2);
    const L = 8 * 8;
    // x4 adds a second 64->256 conv at 4L and moves conv_last from 4L to 16L.
    const extra = 2 * 9 * 64 * 256 * 4 * L + 2 * 9 * 64 * 3 * (16 - 4) * L;
    expect(swinirFlops(cfg, 8, 8) - swinirFlops(x2, 8, 8)).toBe(extra);
  });
});
