import { SingleBar } from 'cli-progress';

/** A progress bar on stderr (stdout stays clean for data); plain periodic lines when stderr is not a TTY. */
export function progressBar(label: string, total: number): { tick: (info?: string) => void; stop: () => void } {
  const bar = new SingleBar({
    stream: process.stderr,
    format: `${label} [{bar}] {value}/{total} {eta_formatted} {info}`,
    noTTYOutput: !process.stderr.isTTY,
    notTTYSchedule: 5000,
    hideCursor: true,
    clearOnComplete: false,
  });
  bar.start(total, 0, { info: '' });
  return {
    tick: (info = '') => bar.increment(1, { info }),
    stop: () => bar.stop(),
  };
}
