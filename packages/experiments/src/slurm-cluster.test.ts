/**
 * The real thing: scripts/slurm-local-test.sh starts a one-node Slurm cluster on localhost, submits a small
 * grid with the emitted setup and checks every cell landed once (about a minute on 2 cores). It needs the
 * Slurm and munge binaries and root; where they are missing (CI) the test is skipped, and says so.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { repoRoot } from '@harmoq/data';

const BINARIES = ['munged', 'slurmctld', 'slurmd', 'sbatch', 'squeue', 'scontrol', 'sinfo'];
const missing = BINARIES.filter((bin) => spawnSync('bash', ['-c', `PATH="$PATH:/usr/sbin:/sbin" command -v ${bin}`]).status !== 0);
const skipReason = missing.length > 0 ? `no Slurm here (missing ${missing.join(', ')})`
  : process.getuid?.() !== 0 ? 'slurmd needs root' : null;

if (skipReason) {
  // Visible in the jest output, not only as a skipped count.
  console.warn(`SKIPPED the local Slurm cluster test: ${skipReason}. Run \`bash scripts/slurm-local-test.sh\` where Slurm is installed (it apt-gets it when missing).`);
}

(skipReason ? test.skip : test)(`a one-node Slurm cluster on localhost runs a grid from --emit slurm${skipReason ? ` [skipped: ${skipReason}]` : ''}`, () => {
  const r = spawnSync('bash', [path.join(repoRoot(), 'scripts/slurm-local-test.sh')], {
    encoding: 'utf8', timeout: 300000, env: { ...process.env, SLURM_TEST_TIMEOUT: '240' },
  });
  const output = `${r.stdout}\n${r.stderr}`;
  expect({ status: r.status, tail: r.status === 0 ? '' : output.slice(-3000) }).toEqual({ status: 0, tail: '' });
  expect(r.stdout).toMatch(/PASS: 3 cells, each stored once with one MLflow run; tables built; re-emit has nothing to run/);
}, 320000);
