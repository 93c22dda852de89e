// Writes the Debian copyright file (machine-readable format 1.0) of the package to stdout: peerdist
// itself, then every bundled npm dependency under APP/node_modules with the license its package.json
// names and the copyright line of its own license file. Usage: node copyright.mjs APP_DIR
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const app = process.argv[2];
const modules = join(app, 'node_modules');

function packages(dir, out = []) {
  for (const name of readdirSync(dir).sort()) {
    if (name.startsWith('.')) continue;
    const p = join(dir, name);
    if (name.startsWith('@')) packages(p, out);
    else if (existsSync(join(p, 'package.json'))) {
      out.push(p);
      if (existsSync(join(p, 'node_modules'))) packages(join(p, 'node_modules'), out);
    }
  }
  return out;
}

function copyrightLine(dir, pkg) {
  const file = readdirSync(dir).find((f) => /^(licen[cs]e|copying)(\.|$)/i.test(f));
  if (file) {
    const m = /^\s*(?:copyright\s*)?(?:\(c\)|©)?\s*(.*(?:\d{4}).*)$/im.exec(readFileSync(join(dir, file), 'utf8'));
    if (m && /copyright|\(c\)|©/i.test(m[0])) return m[0].trim();
  }
  const author = typeof pkg.author === 'string' ? pkg.author : pkg.author?.name;
  return author ? `${author}` : `the ${pkg.name} authors`;
}

const used = new Set(['MIT']);
const paragraphs = [];
for (const dir of packages(modules)) {
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const license = String(pkg.license ?? 'UNKNOWN');
  used.add(license);
  const rel = dir.slice(app.length + 1).replaceAll('\\', '/');
  paragraphs.push(`Files: usr/lib/peerdist/${rel}/*\nCopyright: ${copyrightLine(dir, pkg)}\nLicense: ${license}`);
  if (pkg.name === 'classic-level') {
    // Its prebuilt addon links LevelDB and Snappy in.
    paragraphs.push(
      `Files: usr/lib/peerdist/${rel}/prebuilds/*\n` +
        'Copyright: 2011 The LevelDB Authors; 2011 Google Inc. (Snappy); classic-level contributors\n' +
        'License: BSD-3-Clause and MIT',
    );
    used.add('BSD-3-Clause');
  }
}

const TEXTS = {
  MIT: `Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:
.
The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.
.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.`,
  'BSD-3-Clause': `Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are met:
.
1. Redistributions of source code must retain the above copyright notice,
   this list of conditions and the following disclaimer.
2. Redistributions in binary form must reproduce the above copyright notice,
   this list of conditions and the following disclaimer in the documentation
   and/or other materials provided with the distribution.
3. Neither the name of the copyright holder nor the names of its contributors
   may be used to endorse or promote products derived from this software
   without specific prior written permission.
.
THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"
AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE
IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE
ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR CONTRIBUTORS BE
LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR
CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF
SUBSTITUTE GOODS OR SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS
INTERRUPTION) HOWEVER CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN
CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE)
ARISING IN ANY WAY OUT OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE
POSSIBILITY OF SUCH DAMAGE.`,
  // tslib (a dependency of the Azure SDK). The SPDX 0BSD text.
  '0BSD': `Permission to use, copy, modify, and/or distribute this software for any
purpose with or without fee is hereby granted.
.
THE SOFTWARE IS PROVIDED "AS IS" AND THE AUTHOR DISCLAIMS ALL WARRANTIES WITH
REGARD TO THIS SOFTWARE INCLUDING ALL IMPLIED WARRANTIES OF MERCHANTABILITY
AND FITNESS. IN NO EVENT SHALL THE AUTHOR BE LIABLE FOR ANY SPECIAL, DIRECT,
INDIRECT, OR CONSEQUENTIAL DAMAGES OR ANY DAMAGES WHATSOEVER RESULTING FROM
LOSS OF USE, DATA OR PROFITS, WHETHER IN AN ACTION OF CONTRACT, NEGLIGENCE OR
OTHER TORTIOUS ACTION, ARISING OUT OF OR IN CONNECTION WITH THE USE OR
PERFORMANCE OF THIS SOFTWARE.`,
};

const missing = [...used].filter((l) => !(l.replace(/ and .*/, '') in TEXTS) && !/ and /.test(l));
if (missing.length) {
  process.stderr.write(`copyright.mjs: no license text for ${missing.join(', ')}: add it here\n`);
  process.exit(1);
}
const lines = [
  'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/',
  'Upstream-Name: peerdist',
  '',
  'Files: *',
  'Copyright: 2026 the peerdist authors',
  'License: MIT',
  '',
  ...paragraphs.flatMap((p) => [p, '']),
  ...Object.entries(TEXTS).flatMap(([name, text]) => [
    `License: ${name}`,
    ...text.split('\n').map((l) => ` ${l}`),
    '',
  ]),
];
process.stdout.write(lines.join('\n'));
