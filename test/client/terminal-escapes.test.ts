// Issue 27.8: strings from the network never reach the terminal raw, and derived file names carry
// no control characters. `peerdist get` of the URL (ESC ] 0 ; PWNED BEL ESC [ 2 J),
// `peerdist peers` against a hostile mDNS announcer on loopback (escapes and a bidi override in the
// instance name and TXT values), an error relayed from the daemon that quotes remote text, and the
// status / explain / doctor formatters fed hostile strings.
import t from 'tap';
import { startJobsAdmin } from '../helpers/admin.js';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import makeMdns from 'multicast-dns';
import { JobBook } from '../../src/daemon/jobs.js';
import { defaultOutputName } from '../../src/client/get.js';
import { statusText, finalLine } from '../../src/client/format.js';
import { explainText } from '../../src/client/explain.js';
import { doctorText } from '../../src/client/doctor.js';
import {
  forTerminal,
  hasUnsafeChars,
  jsonForTerminal,
  safeFileName,
  textForTerminal,
} from '../../src/util/terminal.js';
import { runCli } from '../helpers/cli.js';
import { FakeEngine } from '../daemon/fake-engine.js';

const EVIL = '\x1b]0;PWNED\x07\x1b[2J';
/** Anything a terminal acts on: C0 but newline, DEL, C1, bidi controls. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: the test looks for control characters
const RAW = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff]/;

t.test('the shared helper', async (t) => {
  t.equal(forTerminal(`a${EVIL}b`), 'a\\x1b]0;PWNED\\x07\\x1b[2Jb');
  t.equal(forTerminal('x\u009b31my'), 'x\\x9b31my', 'C1 CSI');
  t.equal(forTerminal('x\u202egnp.exe'), 'x\\u{202e}gnp.exe', 'bidi override');
  t.equal(forTerminal('x\u2067y\u2069'), 'x\\u{2067}y\\u{2069}');
  t.equal(forTerminal('del\x7f nul\0 nl\n tab\t'), 'del\\x7f nul\\x00 nl\\x0a tab\\x09');
  t.equal(
    forTerminal('plain ünïcødé 日本 http://h/a b'),
    'plain ünïcødé 日本 http://h/a b',
    'printable text unchanged',
  );
  t.equal(textForTerminal(`line 1${EVIL}\nline 2`), 'line 1\\x1b]0;PWNED\\x07\\x1b[2J\nline 2', 'own newlines kept');
  const v = { name: `n${EVIL}\u009b\u202e`, list: ['\u2028'] };
  const j = jsonForTerminal(v, 2);
  t.notOk(RAW.test(j), 'JSON text has no raw control characters');
  t.same(JSON.parse(j), v, 'and parses to the same value');
  t.equal(safeFileName(`x${EVIL}`), 'x_]0;PWNED__[2J');
  t.equal(safeFileName('a/b\\c\u202ed'), 'a_b_c_d');
  t.ok(hasUnsafeChars(EVIL));
  t.notOk(hasUnsafeChars('fine'));
});

t.test('derived output file names', async (t) => {
  t.equal(defaultOutputName('http://host/x%1b%5d0%3bPWNED%07%1b%5b2J'), 'x_]0;PWNED__[2J');
  t.equal(defaultOutputName('http://host/%e2%80%aegpj.exe'), '_gpj.exe', 'RLO (U+202E) replaced');
  t.equal(defaultOutputName('http://host/a%c2%9bb'), 'a_b', 'C1 replaced');
  t.equal(defaultOutputName('http://host/a%7fb%0a'), 'a_b_');
});

t.test("peerdist get of the issue's URL: safe file name and output", async (t) => {
  const url = 'http://o.test/x%1b%5d0%3bPWNED%07%1b%5b2J';
  const engine = new FakeEngine(new Map([[url, { data: Buffer.from('hello\n') }]]));
  const admin = await startJobsAdmin(new JobBook(engine));
  const dir = await mkdtemp(join(tmpdir(), 'pd-escapes-'));
  t.teardown(async () => {
    await admin.close();
    await rm(dir, { recursive: true, force: true });
  });
  const r = await runCli(['get', url, '--daemon', admin.address], { cwd: dir, timeoutMs: 30_000 });
  t.equal(r.code, 0, r.stderr);
  const names = await readdir(dir);
  t.same(names, ['x_]0;PWNED__[2J'], 'the file name has no control characters');
  t.notOk(RAW.test(r.stdout), `stdout has no raw control characters: ${JSON.stringify(r.stdout)}`);
  t.notOk(RAW.test(r.stderr), 'nor stderr');
  const j = await runCli(['get', url, '--daemon', admin.address, '--json', '-o', 'again'], {
    cwd: dir,
    timeoutMs: 30_000,
  });
  t.equal(j.code, 0, j.stderr);
  t.notOk(RAW.test(j.stdout));
  t.equal((JSON.parse(j.stdout) as { url: string }).url, url);
});

t.test('an error relayed from the daemon that quotes remote text is escaped', async (t) => {
  // A daemon relaying an origin's answer: the error text carries the origin's escape sequences.
  const fake = createServer((_req, res) => {
    res.writeHead(502, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: `ORIGIN_STATUS: origin answered ${EVIL}\u202e HTTP 404`, code: 'ORIGIN_STATUS' }));
  });
  await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => fake.close(() => r())));
  const dir = await mkdtemp(join(tmpdir(), 'pd-escapes-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const r = await runCli(['get', 'http://o.test/f', '--daemon', `127.0.0.1:${(fake.address() as AddressInfo).port}`], {
    cwd: dir,
    timeoutMs: 30_000,
  });
  t.not(r.code, 0);
  t.match(r.stderr, /peerdist: error: .*origin answered \\x1b\]0;PWNED\\x07\\x1b\[2J\\u\{202e\} HTTP 404/);
  t.notOk(RAW.test(r.stderr), `stderr has no raw control characters: ${JSON.stringify(r.stderr)}`);
});

t.test('status, explain and doctor text escape remote strings', async (t) => {
  const s = statusText({
    downloads: [
      {
        id: 'j1',
        url: `http://h/${EVIL}`,
        state: 'running',
        bytesDone: 1,
        contentLength: 2,
      } as never,
    ],
    totals: { fromOrigin: 0, fromPeers: 0, fromCache: 0, servedToPeers: 0 },
    troublePeers: [
      {
        address: `10.0.0.1:80${EVIL}`,
        bans: 1,
        failures: 0,
        notAvailable: 0,
        badBlocks: 1,
        blocks: 0,
        lastFailure: 0,
      },
    ],
  });
  t.notOk(RAW.test(s), 'status');
  t.match(s, /http:\/\/h\/\\x1b\]0;PWNED/);
  const e = explainText({
    id: 'j',
    url: `http://h/${EVIL}\nFAKE LINE`,
    startedAt: 'now',
    state: 'failed',
    error: `boom${EVIL}`,
  } as never);
  t.notOk(RAW.test(e), 'explain');
  t.notMatch(e, /^FAKE LINE/m, 'a newline in the URL does not start a line of its own');
  const d = doctorText({
    ok: false,
    checks: [{ id: 'x', name: 'multicast', status: 'fail', detail: `answered by ${EVIL}`, remedy: `do ${EVIL}` }],
  });
  t.notOk(RAW.test(d), 'doctor');
  t.notOk(
    RAW.test(
      finalLine({
        url: 'u',
        output: `/o${EVIL}`,
        bytes: 1,
        seconds: 1,
        fromOrigin: 1,
        fromPeers: 0,
        fromCache: 0,
        contentInfoBytes: 0,
        peers: 0,
        peerdist: false,
      }),
    ),
    'final line',
  );
});

t.test('peerdist peers against a hostile mDNS announcer', async (t) => {
  const mdnsPort = 20000 + Math.floor(Math.random() * 40000);
  const instance = `evil${EVIL}\u202e\u009b31m._peerdist._tcp.local`;
  const m = makeMdns({
    port: mdnsPort,
    interface: '127.0.0.1',
    bind: '0.0.0.0',
    multicast: true,
    loopback: true,
    ttl: 1,
    reuseAddr: true,
  });
  await new Promise<void>((r) => m.once('ready', () => r()));
  t.teardown(() => new Promise<void>((r) => m.destroy(() => r())));
  m.on('query', (q) => {
    if (!q.questions.some((x) => x.name === '_peerdist._tcp.local')) return;
    m.respond({
      answers: [
        { name: '_peerdist._tcp.local', type: 'PTR', ttl: 120, data: instance },
        { name: instance, type: 'SRV', ttl: 120, data: { port: 4101, target: 'evil.local', priority: 0, weight: 0 } },
        { name: instance, type: 'TXT', ttl: 120, data: [`version=1${EVIL}\u009b2J\u2067`, 'cache=5'] },
        { name: 'evil.local', type: 'A', ttl: 120, data: '127.0.0.1' },
      ],
    });
  });
  const args = ['peers', '--timeout', '600', '--mdns-port', String(mdnsPort), '--interface', '127.0.0.1'];
  const text = await runCli(args, { timeoutMs: 30_000 });
  t.equal(text.code, 0, text.stderr);
  t.match(text.stdout, /evil\\x1b\]0;PWNED\\x07\\x1b\[2J\\u\{202e\}\\x9b31m\s+127\.0\.0\.1:4101\s+5 B\s+1\\x1b/);
  t.notOk(RAW.test(text.stdout), `no raw control characters: ${JSON.stringify(text.stdout)}`);
  const json = await runCli([...args, '--json'], { timeoutMs: 30_000 });
  t.equal(json.code, 0, json.stderr);
  t.notOk(RAW.test(json.stdout), 'JSON output: none either');
  const rows = JSON.parse(json.stdout) as Array<{ name: string; txt: Record<string, string> }>;
  t.equal(rows[0]?.name, `evil${EVIL}\u202e\u009b31m`, 'the JSON keeps the exact value');
  t.equal(rows[0]?.txt.version, `1${EVIL}\u009b2J\u2067`);
});
