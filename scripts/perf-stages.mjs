#!/usr/bin/env node
// Stage table of a `perf record -g` profile of one process, all its threads (issue 25;
// BENCHMARKS.md, "`get` at 1 CPU s per GiB"): what the V8 CPU profile (scripts/profile-stages.mjs)
// cannot see: kernel time by what it did (page-cache copy, direct writes, socket send and receive,
// page faults, epoll), OpenSSL's AES and SHA, V8's GC and compiler threads, LevelDB, libc.
// Every sample is charged to the first category whose test matches its call chain (leaf first).
// Usage:
//   perf script -F tid,period,ip,sym,dso -i FILE | node scripts/perf-stages.mjs [MAIN_TID MAIN_CPU OTHER_CPU] [--from-first-recv]
// Without arguments: shares of all samples. With the main thread's id (the pid) and the CPU
// seconds of the main thread and of the other threads (e.g. per GiB), the two are tabled apart in
// CPU seconds. --from-first-recv: only the samples from the first socket receive on (for `get`:
// without its start-up).
import { createInterface } from 'node:readline';

const kernel = (f) => /\[kernel/.test(f[0]);
const any = (f, re) => f.some((x) => re.test(x));
/** [name, test(frames leaf first)], first match wins. */
const CATEGORIES = [
  [
    'kernel: copy into page cache (buffered file write)',
    (f) => kernel(f) && any(f, /generic_perform_write|ext4_buffered_write_iter|ext4_da_write/),
  ],
  ['kernel: direct file write (O_DIRECT)', (f) => kernel(f) && any(f, /iomap_dio|ext4_dio_write/)],
  ['kernel: file read', (f) => kernel(f) && any(f, /filemap_read|ext4_file_read_iter/)],
  ['kernel: socket receive', (f) => kernel(f) && any(f, /tcp_recvmsg|unix_stream_read|sock_recvmsg|__sys_recvfrom/)],
  [
    'kernel: socket send (incl. loopback delivery)',
    (f) =>
      kernel(f) && any(f, /tcp_sendmsg|unix_stream_sendmsg|sock_sendmsg|sock_write_iter|do_writev/) && !any(f, /ext4/),
  ],
  [
    'kernel: page faults / memory maps',
    (f) => kernel(f) && any(f, /exc_page_fault|do_mprotect|__x64_sys_mmap|__x64_sys_munmap|madvise/),
  ],
  ['kernel: epoll / scheduling / futex', (f) => kernel(f) && any(f, /epoll|schedule|futex|__x64_sys_sched/)],
  ['kernel: fsync / other file system', (f) => kernel(f) && any(f, /ext4|fsync|vfs_|do_sys_open|statx/)],
  ['kernel: other', (f) => kernel(f)],
  ['AES (OpenSSL)', (f) => /aes|AES/.test(f[0])],
  ['SHA (OpenSSL)', (f) => /sha(256|512|1)_block|SHA(256|512)/.test(f[0])],
  [
    'V8 garbage collection',
    (f) =>
      f
        .slice(0, 12)
        .some((x) =>
          /Heap::|Scavenge|MarkCompact|Sweeper|ConcurrentMarking|MarkingVisitor|Marking|Evacuat|GCTracer|MinorMC|ArrayBufferSweeper|heap::/.test(
            x,
          ),
        ),
  ],
  [
    'V8 compiler (TurboFan, Maglev, parser)',
    (f) => f.slice(0, 20).some((x) => /compiler::|Compiler|maglev|Parser|Scanner|Bytecode|Turbofan/.test(x)),
  ],
  ['LevelDB', (f) => any(f, /leveldb/)],
  ['libc memcpy / malloc / free', (f) => /memmove|memcpy|memset|malloc|free|_int_/.test(f[0])],
  [
    'JS and V8 builtins (split by the V8 profile: profile-stages.mjs)',
    (f) => /Builtins_|\[unknown\]|LoadIC|StoreIC|CallFunction|Interpreter/.test(f[0]),
  ],
  [
    'node / libuv / V8 runtime (native)',
    (f) => /\(.*\/node\)|\(node\)/.test(f[0]) || /uv_|uv__|node::|v8::/.test(f[0]),
  ],
  ['other native', () => true],
];

const args = process.argv.slice(2);
const fromRecv = args.includes('--from-first-recv');
const [mainTid, mainCpu, otherCpu] = args.filter((a) => !a.startsWith('--'));
const counts = { main: new Map(), other: new Map(), all: new Map() };
const n = { main: 0, other: 0, all: 0 };
let cur;
let seenRecv = !fromRecv;
const add = (w, k) => {
  counts[w].set(k, (counts[w].get(k) ?? 0) + 1);
  n[w]++;
};
const flush = () => {
  if (!cur) return;
  const f = cur.frames.length ? cur.frames : ['[none]'];
  if (!seenRecv && any(f, /tcp_recvmsg|unix_stream_read/)) seenRecv = true;
  if (seenRecv) {
    const k = CATEGORIES.find(([, test]) => test(f))[0];
    add('all', k);
    if (mainTid !== undefined) add(cur.tid === mainTid ? 'main' : 'other', k);
  }
  cur = undefined;
};
for await (const line of createInterface({ input: process.stdin })) {
  if (/^\s*$/.test(line)) flush();
  else if (!line.startsWith('\t')) {
    flush();
    cur = { tid: /^\s*(\d+)/.exec(line)?.[1], frames: [] };
  } else cur?.frames.push(line.trim().replace(/^[0-9a-f]+ /, ''));
}
flush();
const table = (w, cpu) => {
  console.log(
    `| category | share |${cpu === undefined ? '' : ' CPU s |'}\n|---|---:|${cpu === undefined ? '' : '---:|'}`,
  );
  for (const [k, v] of [...counts[w]].sort((a, b) => b[1] - a[1]))
    console.log(
      `| ${k} | ${((100 * v) / n[w]).toFixed(1)}% |${cpu === undefined ? '' : ` ${((cpu * v) / n[w]).toFixed(2)} |`}`,
    );
};
console.log(`${n.all} samples${mainTid === undefined ? '' : ` (main thread ${n.main}, other threads ${n.other})`}`);
if (mainTid === undefined || mainCpu === undefined) table('all');
else {
  console.log(`\nmain thread (${mainCpu} CPU s):`);
  table('main', Number(mainCpu));
  console.log(`\nother threads (${otherCpu} CPU s):`);
  table('other', Number(otherCpu));
}
