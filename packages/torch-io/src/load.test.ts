import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CheckpointError } from './errors';
import { convertCheckpoint, detectFormat, loadStateDict, sha256File } from './load';
import { readPth } from './pth';
import { readSafetensorsFile, writeSafetensors } from './safetensors';
import { StateDict, bytesOfData } from './tensor';
import { dataDir, goldenDir, refusal } from './testing/fixtures';

const tinyEma = () => path.join(goldenDir(), 'tiny_params_ema_x2/model.pth');


let scratch: string;
beforeEach(() => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'torch-io-load-'));
});
afterEach(() => fs.rmSync(scratch, { recursive: true, force: true }));

describe('sha256File', () => {
  it('hashes files (checked against sha256sum)', () => {
    expect(sha256File(tinyEma())).toBe('a3dd0056083ab523359aa6dc87fd3fb26c066f70a4327b9e473c263f6e839407');
    const empty = path.join(scratch, 'empty');
    fs.writeFileSync(empty, '');
    expect(sha256File(empty)).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });
});

describe('loadStateDict', () => {
  it('loads a .pth and reports the format, the key and the sha256', () => {
    const loaded = loadStateDict(tinyEma());
    expect(loaded.format).toBe('pth');
    expect(loaded.key).toBe('params_ema');
    expect(loaded.sha256).toBe('a3dd0056083ab523359aa6dc87fd3fb26c066f70a4327b9e473c263f6e839407');
    expect(loaded.stateDict.size).toBe(72);
  });

  it('chooses the reader by content, not by file extension', () => {
    const stateDict: StateDict = new Map([['w', { dtype: 'float32', shape: [1], data: new Float32Array([3]) }]]);
    const disguised = path.join(scratch, 'weights.pth');
    writeSafetensors(disguised, stateDict);
    const loaded = loadStateDict(disguised);
    expect(loaded.format).toBe('safetensors');
    expect(loaded.key).toBeNull();
    expect(loaded.stateDict).toEqual(stateDict);
  });

  it('refuses other files, naming what they start with and the supported formats', () => {
    const text = path.join(scratch, 'notes.pth');
    fs.writeFileSync(text, 'hello world');
    expect(refusal(() => loadStateDict(text)).message).toBe(
      `not a PyTorch checkpoint: starts with bytes 68 65 6C 6C 6F 20 77 6F, expected a zip archive (PK\\x03\\x04) or a safetensors header ` +
        `(supported formats: pth (torch.save zip archive), safetensors) [${text}]`,
    );
    const png = path.join(goldenDir(), 'bad/not_a_checkpoint.pth');
    expect(refusal(() => loadStateDict(png)).message).toContain(
      'not a PyTorch checkpoint: starts with the PNG signature 89 50 4E 47, expected a zip archive (PK\\x03\\x04)',
    );
    expect(refusal(() => detectFormat(new Uint8Array(0))).message).toMatch(/^not a PyTorch checkpoint: is empty/);
    expect(refusal(() => loadStateDict(path.join(scratch, 'missing.pth'))).message).toMatch(/cannot read checkpoint: ENOENT/);
  });

  it.each(['truncated.pth', 'forbidden_global.pth', 'forbidden_global_os.pth'])('refuses bad/%s', (file) => {
    expect(() => loadStateDict(path.join(goldenDir(), 'bad', file))).toThrow(CheckpointError);
  });
});

describe('convertCheckpoint', () => {
  it('converts a house .pth to safetensors with the same tensors and its provenance in __metadata__', () => {
    const source = path.join(dataDir(), 'weights/house/swinir_light_x2_house.pth');
    const out = path.join(scratch, 'house.safetensors');
    const result = convertCheckpoint(source, out);
    expect(result.source).toEqual({ format: 'pth', key: 'params', sha256: sha256File(source), metadata: {} });
    expect(result.entries).toBe(366);
    expect(result.sha256).toBe(sha256File(out));
    expect(fs.readdirSync(scratch)).toEqual(['house.safetensors']);

    const converted = readSafetensorsFile(out);
    expect(converted.metadata).toEqual({
      format: 'pt',
      source_file: 'swinir_light_x2_house.pth',
      source_format: 'pth',
      source_key: 'params',
      source_sha256: '92878f53eaf2cfd3dd37b0350f8f69022e27e4b69c67377459b8ed40534848e9',
    });
    const original = readPth(fs.readFileSync(source)).stateDict;
    expect([...converted.stateDict.keys()]).toEqual([...original.keys()]);
    for (const [name, tensor] of original) {
      const copy = converted.stateDict.get(name)!;
      expect([copy.dtype, copy.shape]).toEqual([tensor.dtype, tensor.shape]);
      // Byte comparison: jest's deep equality over 4 M elements takes seconds.
      expect(Buffer.from(bytesOfData(copy.data)).equals(bytesOfData(tensor.data))).toBe(true);
    }
  });

  it('records an empty source key for a bare state dict and leaves no file when the source is refused', () => {
    const out = path.join(scratch, 'x.safetensors');
    expect(() => convertCheckpoint(path.join(goldenDir(), 'bad/truncated.pth'), out)).toThrow(/no zip end-of-central-directory/);
    expect(fs.readdirSync(scratch)).toEqual([]);
    const bare = path.join(scratch, 'bare.safetensors');
    writeSafetensors(bare, new Map([['w', { dtype: 'uint8', shape: [1], data: Uint8Array.from([9]) }]]));
    convertCheckpoint(bare, out);
    expect(readSafetensorsFile(out).metadata.source_key).toBe('');
  });
});
