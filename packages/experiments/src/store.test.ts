import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CellStore, CLAIM_FILE, RESULT_FILES, type ClaimHolder } from './store';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'harmoq-claim-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

let n = 0;
/** A fresh results folder and an eval cell in it. */
function fresh() {
  const store = new CellStore(path.join(tmp, `r${n++}`));
  const cell = { key: `eval-${'0'.repeat(23)}${n % 10}`, kind: 'eval' as const };
  const finish = () => fs.writeFileSync(store.resultPath(cell), '{}');
  const claimFile = path.join(store.dir(cell.key), CLAIM_FILE);
  return { store, cell, finish, claimFile };
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs `work` once per caller that finds the cell unfinished, as `harmoq cell` does. */
function runOnce(t: ReturnType<typeof fresh>, log: string[], who: string, ms: number) {
  return t.store.withClaim(t.cell, async () => {
    if (t.store.isDone(t.cell)) return log.push(`${who} found it done`);
    log.push(`${who} runs`);
    await sleep(ms);
    t.finish();
    return log.push(`${who} finished`);
  }, { pollMs: 20 });
}

describe('CellStore.withClaim: one process at a time computes a cell', () => {
  test('a second caller waits for the holder, then finds the cell finished; the claim file is gone after', async () => {
    const t = fresh();
    const log: string[] = [];
    await Promise.all([runOnce(t, log, 'a', 200), sleep(5).then(() => runOnce(t, log, 'b', 200))]);
    expect(log).toEqual(['a runs', 'a finished', 'b found it done']);
    expect(fs.readdirSync(path.dirname(t.claimFile))).toEqual([RESULT_FILES.eval]);
  });

  test('the claim is released when the work throws', async () => {
    const t = fresh();
    await expect(t.store.withClaim(t.cell, async () => { throw new Error('boom'); })).rejects.toThrow('boom');
    expect(fs.existsSync(t.claimFile)).toBe(false);
  });

  test('a claim whose holder died on this host is taken over at once', async () => {
    const t = fresh();
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    fs.mkdirSync(path.dirname(t.claimFile), { recursive: true });
    fs.writeFileSync(t.claimFile, JSON.stringify({ host: os.hostname(), pid: Number(dead.stdout), token: 'dead', started: 0 } satisfies ClaimHolder));
    const waits: ClaimHolder[] = [];
    const log: string[] = [];
    await t.store.withClaim(t.cell, async () => log.push('ran'), { pollMs: 20, onWait: (h) => waits.push(h) });
    expect(log).toEqual(['ran']);
    expect(waits).toEqual([]);
    expect(fs.readdirSync(path.dirname(t.claimFile))).toEqual([]);
  });

  test('a claim from another host is waited for while its heartbeat is fresh, and taken over once it is stale', async () => {
    const t = fresh();
    fs.mkdirSync(path.dirname(t.claimFile), { recursive: true });
    const other: ClaimHolder = { host: 'elsewhere', pid: 1, token: 'other', started: 0 };
    fs.writeFileSync(t.claimFile, JSON.stringify(other));
    const waits: ClaimHolder[] = [];
    let ran = false;
    const claimed = t.store.withClaim(t.cell, async () => { ran = true; }, { pollMs: 20, staleMs: 60000, onWait: (h) => waits.push(h) });
    await sleep(300);
    expect(ran).toBe(false);
    expect(waits).toEqual([other]);
    const longAgo = new Date(Date.now() - 120000);
    fs.utimesSync(t.claimFile, longAgo, longAgo);
    await claimed;
    expect(ran).toBe(true);
    expect(fs.readdirSync(path.dirname(t.claimFile))).toEqual([]);
  });

  test('the holder keeps its claim fresh while it works', async () => {
    const t = fresh();
    const old = new Date(Date.now() - 120000);
    await t.store.withClaim(t.cell, async () => {
      fs.utimesSync(t.claimFile, old, old);
      await sleep(120);
      expect(Date.now() - fs.statSync(t.claimFile).mtimeMs).toBeLessThan(60000);
    }, { heartbeatMs: 30 });
  });

  test('processes racing for one cell: exactly one computes it', async () => {
    const t = fresh();
    const ranLog = path.join(tmp, `ran-${n}.log`);
    const child = `
      const fs = require('node:fs');
      const { CellStore } = require(${JSON.stringify(path.join(__dirname, 'store.ts'))});
      const store = new CellStore(${JSON.stringify(path.dirname(t.store.root))});
      const cell = ${JSON.stringify(t.cell)};
      store.withClaim(cell, async () => {
        if (store.isDone(cell)) return;
        fs.appendFileSync(${JSON.stringify(ranLog)}, process.pid + '\\n');
        await new Promise((r) => setTimeout(r, 300));
        fs.writeFileSync(store.resultPath(cell), '{}');
      }, { pollMs: 25 }).then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });`;
    const codes = await Promise.all([0, 1, 2, 3].map(() => new Promise<number | null>((resolve) => {
      const p = spawn(process.execPath, ['--require', require.resolve('tsx/cjs'), '-e', child], { stdio: ['ignore', 'ignore', 'inherit'] });
      p.on('exit', resolve);
    })));
    expect(codes).toEqual([0, 0, 0, 0]);
    expect(fs.readFileSync(ranLog, 'utf8').trim().split('\n')).toHaveLength(1);
    expect(fs.readdirSync(path.dirname(t.claimFile))).toEqual([RESULT_FILES.eval]);
  }, 60000);
});
