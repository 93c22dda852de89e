#!/usr/bin/env node
// Stage table of a daemon CPU profile (issue 25; BENCHMARKS.md). Usage:
//   node scripts/profile-stages.mjs DIR/daemon-<pid>.cpuprofile [CPU_S_PER_GIB] [--last-download | --last-serving]
// (profiles from: node dist/bench/loopback.js --profile DIR). `--last-download`: only the samples
// from the first to the last sample of the daemon's last peer download (the last run of samples
// under fetchFromPeer without a gap over 2 s), i.e. without start-up, the rounds before, or the
// probes answered while other daemons downloaded: the span the bench's CPU s per GiB measures.
// Stage table from a CPU profile: every sample charged to a stage by the nearest frame of our own
// code (dist/src/...), else by what node/undici frames the stack holds. Prints share of busy samples
// and, given the process's measured CPU s per GiB, the CPU s per GiB of each stage.
import fs from 'node:fs';
const args = process.argv.slice(2);
const lastDownload = args.includes('--last-download');
const lastServing = args.includes('--last-serving');
const [file, perGiB] = args.filter((a) => a !== '--last-download' && a !== '--last-serving');
const p = JSON.parse(fs.readFileSync(file));
const parent = new Map();
const byId = new Map();
for (const n of p.nodes) {
  byId.set(n.id, n);
  for (const c of n.children ?? []) parent.set(c, n.id);
}
const dt = p.timeDeltas;
let from = 0;
let to = p.samples.length - 1;
if (lastDownload || lastServing) {
  const inWindow = lastDownload
    ? (cf) => cf.functionName === 'fetchFromPeer'
    : (cf) => /dist\/src\/retrieval\/(server|lean-http|block-responder)\.js$/.test(cf.url);
  const under = new Map();
  const receiving = (id) => {
    if (!under.has(id)) {
      let cur = id;
      let r = false;
      for (; cur !== undefined; cur = parent.get(cur))
        if (inWindow(byId.get(cur).callFrame)) {
          r = true;
          break;
        }
      under.set(id, r);
    }
    return under.get(id);
  };
  let clock = 0;
  let prev;
  from = -1;
  for (let i = 0; i < p.samples.length; i++) {
    clock += dt[i];
    if (!receiving(p.samples[i])) continue;
    if (prev === undefined || clock - prev > 2e6) from = i;
    prev = clock;
    to = i;
  }
  if (from < 0)
    throw new Error(`no sample under ${lastDownload ? 'fetchFromPeer' : 'the retrieval server'} in this profile`);
}
const t = new Map();
for (let i = from; i <= to; i++) t.set(p.samples[i], (t.get(p.samples[i]) ?? 0) + (dt[i + 1] ?? 0));
const byFile = [
  [
    /^retrieval\/(client|peer-wire)|^protocol\/pccrr\/codec|^protocol\/wire/,
    'MS-PCCRR exchange (client, codec, undici)',
  ],
  [/^protocol\/pccrr\/crypto/, 'AES (decrypt / encrypt)'],
  [/^protocol\/pccrc\/types|checkBlock|verify/, 'SHA hash check'],
  [/^cache\//, 'cache write / read and index (segment files, LevelDB)'],
  [/^engine\/scheduler/, 'scheduler pick'],
  [/^engine\/reader|^daemon\/jobs|^daemon\/admin|^daemon\/http-util/, 'the stream to get'],
  [/^discovery\/|^protocol\/pccrd|^engine\/discovery-feed/, 'discovery bookkeeping'],
  [/^engine\/counters|^daemon\/metrics|^daemon\/history|^daemon\/status-report|^daemon\/peer-tracker/, 'counters'],
  [/^engine\/trace|^daemon\/traces/, 'traces for explain'],
  [/^util\/timers/, 'timers'],
  [/^util\/log/, 'logging'],
  [
    /^retrieval\/server|^retrieval\/lean-http|^retrieval\/fair-share|^retrieval\/block-responder|^retrieval\/sealed|^retrieval\/rate/,
    'serving (retrieval server)',
  ],
  [/^engine\//, 'engine per-block glue (transfer, fetch, job)'],
  [/^cli\/|^daemon\/daemon|^daemon\/config/, 'start-up and daemon plumbing'],
];
const cat = new Map();
let busy = 0;
for (const [id, ms] of t) {
  const leaf = byId.get(id).callFrame.functionName;
  if (leaf === '(idle)') continue;
  busy += ms;
  let k;
  if (leaf === '(garbage collector)') k = 'garbage collector';
  else if (leaf === '(program)') k = '(program: V8/native outside JS)';
  else {
    let cur = id;
    const urls = [];
    while (cur !== undefined) {
      const cf = byId.get(cur).callFrame;
      const m = /dist\/src\/(.*)\.js$/.exec(cf.url);
      if (m) {
        const key = `${m[1]} ${cf.functionName}`;
        k = byFile.find(([re]) => re.test(key))?.[1] ?? `other project code (${m[1]})`;
        break;
      }
      urls.push(cf.url + ' ' + cf.functionName);
      cur = parent.get(cur);
    }
    if (!k) {
      const s = urls.join('\n');
      if (/undici/.test(s)) k = 'MS-PCCRR exchange (client, codec, undici)';
      else if (/_http_outgoing|_http_server|connectionCorkNT/.test(s))
        k = 'node http server (receiving: the stream to get; serving: responses)';
      else if (/dgram/.test(s)) k = 'discovery bookkeeping';
      else if (/modules\/|loader|translators/.test(s)) k = 'start-up and daemon plumbing';
      else k = 'other node internals (promises, streams, fs callbacks)';
    }
  }
  cat.set(k, (cat.get(k) ?? 0) + ms);
}
console.log(`| stage | share of busy samples |${perGiB ? ' CPU s per GiB |' : ''}\n|---|---:|${perGiB ? '---:|' : ''}`);
for (const [k, v] of [...cat].sort((a, b) => b[1] - a[1]))
  console.log(
    `| ${k} | ${((100 * v) / busy).toFixed(1)}% |${perGiB ? ` ${((Number(perGiB) * v) / busy).toFixed(1)} |` : ''}`,
  );
