export { writeFileAtomic } from '@harmoq/atomic-fs';
