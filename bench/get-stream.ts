/**
 * What `peerdist get` costs to receive bytes (issue 25 target: at most 1 CPU s per GiB): a stand-in
 * admin API in this process streams SIZE bytes for /v1/fetch in 148 KB writes (the daemon writes a
 * v2 block at a time) and answers /v1/jobs/<id> as done; `peerdist get --json` runs as a child and
 * reports its own cpuSeconds (it writes DIR/f.bin, or /dev/null with --null: without the page cache). `get --help` is run too, for the start-up cost alone. With --base
 * CLI_ENTRY a second build's `get` runs alternately in the same run (side by side).
 *   npm run build && node dist/bench/get-stream.js [--size 1GiB] [--rounds 3] [--unix] [--null] [--keep] [--base /path/to/src/cli/run.js]
 */
import { createServer, type ServerResponse } from 'node:http';
import { benchArgs } from './args.js';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseSize } from '../testkit/sim/files.js';

const { values } = benchArgs(import.meta.url, {
  options: {
    size: { type: 'string', default: '1GiB' },
    rounds: { type: 'string', default: '3' },
    unix: { type: 'boolean', default: false },
    /** Write to /dev/null (in place, no file): what receiving costs without the page cache. */
    null: { type: 'boolean', default: false },
    /**
     * Keep every round's output until the end (as a user keeps downloads): each get then writes into
     * page-cache pages nobody used before, instead of the pages the previous round's deleted file freed.
     */
    keep: { type: 'boolean', default: false },
    base: { type: 'string' },
  },
});
const size = parseSize(values.size!);
const rounds = Number(values.rounds);
const here = dirname(fileURLToPath(import.meta.url));
const thisCli = resolve(here, '..', 'src', 'cli', 'run.js');
const BLOCK = Buffer.alloc(148 * 1024, 7);

function stream(res: ServerResponse): void {
  res.writeHead(200, {
    'content-type': 'application/octet-stream',
    'content-length': size,
    'x-peerdist-job': 'job1',
  });
  let left = size;
  const pump = () => {
    while (left > 0) {
      const n = Math.min(BLOCK.length, left);
      left -= n;
      const ok = res.write(n === BLOCK.length ? BLOCK : BLOCK.subarray(0, n));
      if (!ok) return void res.once('drain', pump);
    }
    res.end();
  };
  pump();
}

const server = createServer((req, res) => {
  if (req.url?.startsWith('/v1/fetch')) return stream(res);
  const body = JSON.stringify({
    id: 'job1',
    url: 'http://o.test/f',
    state: 'done',
    contentLength: size,
    fromOrigin: 0,
    fromPeers: size,
    fromCache: 0,
    contentInfoBytes: 0,
    peers: 1,
    peerdist: true,
  });
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
});

const dir = await mkdtemp(join(tmpdir(), 'pd-get-bench-'));
const daemon = values.unix ? join(dir, 'admin.sock') : '127.0.0.1:0';
await new Promise<void>((r) => (values.unix ? server.listen(daemon, r) : server.listen(0, '127.0.0.1', r)));
const addr = values.unix ? daemon : `127.0.0.1:${(server.address() as { port: number }).port}`;

function run(cli: string, args: string[]): Promise<string> {
  return new Promise((resolveP, reject) =>
    execFile(process.execPath, [cli, ...args], { cwd: dir, maxBuffer: 1 << 20 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}\n${stderr}`)) : resolveP(stdout),
    ),
  );
}

/** CPU seconds (user + system) of `node CLI get --help`: the start-up alone (bash's `time`). */
function startupCpu(cli: string): Promise<number> {
  return new Promise((resolveP, reject) =>
    execFile(
      'bash',
      ['-c', 'TIMEFORMAT="%3U %3S"; time "$0" "$1" get --help >/dev/null', process.execPath, cli],
      (err, _out, stderr) => {
        if (err) return reject(err);
        const [u, s] = stderr.trim().split('\n').pop()!.split(' ').map(Number);
        resolveP(u! + s!);
      },
    ),
  );
}

let outputs = 0;

/** CPU seconds of `get --help` (start-up) and of a get of SIZE bytes (its own cpuSeconds). */
async function measure(cli: string): Promise<{ startup: number; get: number; seconds: number }> {
  const startup = await startupCpu(cli);
  const out = values.null ? '/dev/null' : join(dir, `f${++outputs}.bin`);
  const w0 = performance.now();
  const stdout = await run(cli, ['get', 'http://o.test/f', '--daemon', addr, '-o', out, '--json']);
  const seconds = (performance.now() - w0) / 1000;
  const r = JSON.parse(stdout.trim().split('\n').pop()!) as { cpuSeconds: number; bytes: number };
  if (r.bytes !== size) throw new Error('get received the wrong size');
  if (!values.null) {
    if ((await stat(out)).size !== size) throw new Error('get wrote the wrong size');
    if (!values.keep) await rm(out);
  }
  return { startup, get: r.cpuSeconds, seconds };
}

const builds: Array<[string, string]> = [['this', thisCli]];
if (values.base) builds.push(['base', resolve(values.base)]);
const gib = size / 2 ** 30;
console.log(`| round | build | get CPU s | CPU s per GiB | get --help CPU s | wall s | MB/s |`);
console.log(`|---:|---|---:|---:|---:|---:|---:|`);
try {
  for (let k = 1; k <= rounds; k++) {
    for (const [name, cli] of k % 2 ? builds : [...builds].reverse()) {
      const m = await measure(cli);
      console.log(
        `| ${k} | ${name} | ${m.get.toFixed(2)} | ${(m.get / gib).toFixed(2)} | ${m.startup.toFixed(2)} | ${m.seconds.toFixed(2)} | ${Math.round(size / 1e6 / m.seconds)} |`,
      );
    }
  }
} finally {
  server.close();
  await rm(dir, { recursive: true, force: true });
}
