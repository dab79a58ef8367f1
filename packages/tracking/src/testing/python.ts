import { spawnSync } from 'node:child_process';

/**
 * Runs a Python snippet with JSON on stdin when python3 with PyYAML is installed (it is on the project
 * machines; MLflow itself is not). Tests use it to hold our YAML and float text to PyYAML's and Python's
 * own output, and skip those checks where Python is missing.
 */
export function pythonWithYaml(): ((script: string, input: unknown) => unknown) | undefined {
  const probe = spawnSync('python3', ['-c', 'import yaml'], { encoding: 'utf8' });
  if (probe.status !== 0) return undefined;
  return (script, input) => {
    const res = spawnSync('python3', ['-c', script], { input: JSON.stringify(input), encoding: 'utf8', maxBuffer: 64 << 20 });
    if (res.status !== 0) throw new Error(`python3 failed: ${res.stderr}`);
    return JSON.parse(res.stdout) as unknown;
  };
}
