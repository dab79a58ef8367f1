/** CONTRIBUTING.md's worked example of a new PTQ method: the quoted file is the fixture, and it runs. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { dataDir, goldenDir, repoRoot } from '@harmoq/data';
import { checkArchitecture } from '@harmoq/swinir';
import { loadStateDict } from '@harmoq/torch-io';
import { resolveRequest } from './config';
import type { AnyPtqMethod } from './method';
import { PTQ_METHODS } from './methods';
import { qparamsPlan } from './qparams';
import { quantizeModel } from './quantize';
import { siteWeight } from './sites';
import { absmaxSymmetric } from './testing/absmax-symmetric';

const fixture = path.join(__dirname, 'testing/absmax-symmetric.ts');

test('CONTRIBUTING.md quotes the example method file exactly', () => {
  const doc = fs.readFileSync(path.join(repoRoot(), 'CONTRIBUTING.md'), 'utf8');
  const block = /<!-- example: packages\/quant\/src\/testing\/absmax-symmetric\.ts -->\n```ts\n([\s\S]*?)```\n<!-- \/example -->/.exec(doc);
  expect(block).not.toBeNull();
  expect(block![1]).toBe(fs.readFileSync(fixture, 'utf8'));
  expect(doc).toContain("'absmax-symmetric': absmaxSymmetric");
});

test('the example, registered with one line, calibrates through the real pipeline and honours its option', async () => {
  const registry = PTQ_METHODS as Record<string, AnyPtqMethod>;
  registry['absmax-symmetric'] = absmaxSymmetric; // the one registry line
  try {
    const stateDict = loadStateDict(path.join(goldenDir(), 'tiny_pixelshuffledirect_x2/model.pth')).stateDict;
    const config = checkArchitecture(stateDict, { imgSize: 16 });
    const request = resolveRequest({ method: 'absmax-symmetric', wbits: 4, abits: 4, set: ['scale=0.5', 'count=2', 'patchSize=16', 'heldOutCount=0'] });
    expect(request.options).toEqual({ scale: 0.5 });
    const qp = await quantizeModel({ arch: 'tiny', config, stateDict, checkpoint: { file: 'model.pth', sha256: '0'.repeat(64) } }, request, {
      dataDir: dataDir(), threads: 1,
    });
    expect(qp.method).toBe('absmax-symmetric');
    const { plan, bounds } = qparamsPlan(qp);
    for (const site of plan.sites) {
      const b = bounds.get(site.id)!;
      expect(b.lower[0]).toBe(-b.upper[0]);
      if (site.role === 'weight') {
        const a = siteWeight(site, stateDict).reduce((m, v) => Math.max(m, Math.abs(v)), 0);
        expect(b.upper[0]).toBe(Math.fround(a * 0.5));
      }
    }
    expect(() => resolveRequest({ method: 'absmax-symmetric', wbits: 4, abits: 4, set: ['scale=-1'] })).toThrow(/invalid options for method 'absmax-symmetric': scale/);
  } finally {
    delete registry['absmax-symmetric'];
  }
});
