// Helpers the bench scripts share.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** Writes `value` as pretty JSON: temp file in the same folder, fsync, rename (a killed run leaves the old file). */
export function writeJsonAtomic(file, value) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, 'w');
  fs.writeSync(fd, JSON.stringify(value, null, 2) + '\n');
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
}

/** The machine and code a benchmark ran on (`repo`: the repository root, for git and the installed versions). */
export function machine(repo) {
  const git = (...a) => { try { return execFileSync('git', a, { cwd: repo, encoding: 'utf8' }).trim(); } catch { return null; } };
  const version = (pkg) => JSON.parse(fs.readFileSync(path.join(repo, 'node_modules', pkg, 'package.json'), 'utf8')).version;
  return {
    cpu_model: os.cpus()[0]?.model ?? 'unknown', cores: os.availableParallelism?.() ?? os.cpus().length,
    memory_gib: Math.round(os.totalmem() / 2 ** 30), platform: `${os.platform()} ${os.release()}`,
    node: process.version, onnxruntime_node: version('onnxruntime-node'), tfjs: version('@tensorflow/tfjs'),
    commit: git('rev-parse', 'HEAD'), dirty: Boolean(git('status', '--porcelain', '--untracked-files=no')),
    load_average_at_start: os.loadavg().map((v) => Number(v.toFixed(2))), date: new Date().toISOString(),
  };
}
