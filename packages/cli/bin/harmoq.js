#!/usr/bin/env node
// The `harmoq` command. Sources are TypeScript; tsx compiles them on the fly (cached), so there is no build step.
require('tsx/cjs');
require('../src/main.ts')
  .run(process.argv.slice(2))
  .then((code) => { process.exitCode = code; });
