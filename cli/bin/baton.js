#!/usr/bin/env node
// The `baton` command. The CLI itself is cli/dist/main.js (built by `npx tsc -b`); this launcher is
// a file of the repository so that `npm ci` can link it into node_modules/.bin and mark it
// executable before anything is built, and a rebuild does not lose that.
'use strict';
let cli;
try {
  cli = require('../dist/main.js');
} catch (err) {
  if (err && err.code === 'MODULE_NOT_FOUND' && String(err.message).includes('dist/main.js')) {
    console.error('baton: the CLI is not built yet; run `npx tsc -b` (or `npm run build`) first');
    process.exit(1);
  }
  throw err;
}
cli.main();
