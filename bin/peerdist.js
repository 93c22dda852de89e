#!/usr/bin/env node
// Launcher: runs the compiled CLI in dist/src. An installed package (npm, Debian) ships dist/src
// already compiled and never installs or compiles anything here. Only a git clone run straight
// from its working tree (README, "Development") builds itself on first use with
// scripts/bootstrap.mjs, which the package does not ship.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';
import { execFileSync } from 'node:child_process';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const entry = join(root, 'dist', 'src', 'cli', 'main.js');
if (!existsSync(entry)) {
  const bootstrap = join(root, 'scripts', 'bootstrap.mjs');
  if (!existsSync(bootstrap)) {
    process.stderr.write(`peerdist: error: the compiled code is missing (${entry}); reinstall the package\n`);
    process.exit(1);
  }
  execFileSync(process.execPath, [bootstrap], { stdio: 'inherit' });
}
const { main } = await import(pathToFileURL(entry).href);
await main(process.argv);
