/**
 * Generated tables inside a Markdown file (the README): a block between
 * `<!-- harmoq tables: <file under results/> -->` and `<!-- /harmoq tables -->` is replaced by that file's
 * content, so `harmoq tables` keeps the README's table in step with the results.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '@harmoq/atomic-fs';

const BLOCK = /(<!-- harmoq tables: ([^\s]+) -->\n)[\s\S]*?(<!-- \/harmoq tables -->)/g;

/** The text with every block refilled; a block whose file does not exist says so. */
export function fillTableBlocks(text: string, resultsDir: string): string {
  return text.replace(BLOCK, (_all, open: string, rel: string, close: string) => {
    const file = path.join(resultsDir, rel);
    const body = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : `_(not built yet: run \`npx harmoq tables\`)_\n`;
    // A blank line before the closing comment, so Markdown ends the table there.
    return `${open}${body}\n${close}`;
  });
}

/** Refills the blocks of `markdownFile` in place; returns whether it changed. */
export function updateTableBlocks(markdownFile: string, resultsDir: string): boolean {
  if (!fs.existsSync(markdownFile)) return false;
  const before = fs.readFileSync(markdownFile, 'utf8');
  const after = fillTableBlocks(before, resultsDir);
  if (after === before) return false;
  writeFileAtomic(markdownFile, after);
  return true;
}
