import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic as writeAtomic, type AtomicWriteOptions } from '@harmoq/atomic-fs';

export { appendLineDurable } from '@harmoq/atomic-fs';

/** The store creates run folders lazily, so its atomic writes make the target's folder first. */
export function writeFileAtomic(target: string, data: string | Uint8Array, options?: AtomicWriteOptions): void {
  fs.mkdirSync(path.dirname(target), { recursive: true });
  writeAtomic(target, data, options);
}
