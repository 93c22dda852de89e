#!/usr/bin/env node
// Executable entry used by tests and scripts that spawn the CLI from a build directory.
import { main } from './main.js';
await main(process.argv);
