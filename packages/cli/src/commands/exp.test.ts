import * as fs from 'node:fs';
import { harmoq, tempFolder } from '../testing/harmoq';

const tmp = tempFolder('harmoq-exp-cli-');


describe('harmoq exp / cell / tracking: bad input is one line and exit 2', () => {
  test.each([
    [['exp', 'nope'], "harmoq: unknown experiment 'nope' (choices: baselines, main)"],
    [['exp', 'baselines', '--dry-run', '--only', 'methd=minmax'], "harmoq: unknown --only key 'methd' (did you mean 'method'? keys: scale, method, dataset, bits)"],
    [['exp', 'main', '--dry-run', '--only', 'scale=3'], "harmoq: --only scale='3' is not in this grid (values: 4, 2)"],
    [['exp', 'main', '--dry-run', '--set', 'bits=W9A9'], /^harmoq: --set bits=W9A9: bits\.0: Invalid option: expected one of "W2A2"/],
    [['exp', 'main', '--jobs', '0'], "harmoq: --jobs '0' must be a positive integer"],
    [['cell', 'main', '-1'], "harmoq: cell index '-1' must be a non-negative integer"],
    [['cell', 'main', '9999', '--results', tmp], /^harmoq: cell index 9999 is out of range \(0\.\.\d+ for baselines\)$/],
    [['tracking', 'sync', '--to', 'ftp://x'], /bad usage/],
  ])('%j', async (argv, message) => {
    const r = await harmoq(...argv);
    expect(r.code).toBe(2);
    const last = r.stderr.trim().split('\n').pop()!;
    if (typeof message === 'string') expect(last).toBe(message);
    else expect(last).toMatch(message);
    expect(fs.readdirSync(tmp)).toEqual([]);
  });

  test('--dry-run lists the selected cells with their index, state and key, and writes nothing', async () => {
    const r = await harmoq('exp', 'main', '--dry-run', '--results', tmp, '--only', 'method=fp', '--only', 'scale=4');
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines.slice(0, 3).map((l) => l.replace(/eval-[0-9a-f]{24}/, 'KEY'))).toEqual([
      '   0  todo  KEY  eval Set5 x4 fp', '   1  todo  KEY  eval Set14 x4 fp', '   2  todo  KEY  eval B100 x4 fp',
    ]);
    expect(lines[3]).toMatch(/^baselines: 3 cells selected of \d+, 0 done, 3 to run$/);
    expect(fs.readdirSync(tmp)).toEqual([]);
  });
});
