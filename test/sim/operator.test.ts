/**
 * The operator commands against real daemons in network namespaces: `doctor`, `explain` and
 * `status` on a LAN where multicast works, then on one whose switch drops multicast (bridge
 * mcast_flood off: WS-Discovery on UDP 3702 no longer gets between hosts), which `doctor` must
 * diagnose (exit 1) and `explain` must show as "no peer answered discovery". Small and bounded:
 * 3 clients, a 2 MiB file. Skips unless root with iproute2.
 */
import t from 'tap';
import { Cluster } from '../../testkit/sim/harness.js';
import { NetnsNetwork } from '../../testkit/sim/network.js';
import { netnsSupport } from '../../testkit/sim/netns.js';
import { peerdistEntry } from '../../testkit/sim/entrypoints.js';
import type { DownloadTrace } from '../../src/daemon/traces.js';

const support = await netnsSupport();
const SIZE = 2 * 1024 * 1024 + 4321;

interface Report {
  ok: boolean;
  checks: Array<{ id: string; status: string; detail: string; remedy?: string }>;
}

if (!support.ok) {
  t.plan(0, `network namespaces unavailable: ${support.reason}`);
} else {
  t.test('doctor, explain and status with multicast working, then dropped by the switch', async (t) => {
    const net = await NetnsNetwork.create({ subnet: '10.214.0' });
    const c = await Cluster.create({
      network: net,
      clients: 3,
      wan: { rateBps: 40e6, delayMs: 10 },
      files: [{ name: 'f.bin', size: SIZE }],
    });
    t.teardown(() => c.close());
    const [d1, , d3] = await c.startDaemons();
    const pd = async (i: number, args: string[]) => {
      const d = c.daemons[i - 1]!;
      const r = await net.run(d.host, process.execPath, [peerdistEntry, ...args, '--daemon', d.admin], {
        timeoutMs: 60_000,
        env: { ...process.env, PEERDIST_LOG: 'warn' },
      });
      return r;
    };

    const first = await c.download(1, 'f.bin');
    t.ok(first.correct, 'client 1 has the file (from the origin)');

    // Multicast works: doctor on client 2 hears the other daemons.
    const ok = await pd(2, ['doctor', '--expect-peers', '--origin', c.url('f.bin')]);
    t.comment(`$ peerdist doctor --expect-peers --origin ${c.url('f.bin')}\n${ok.stdout}`);
    t.equal(ok.code, 0, 'doctor passes');
    const okJson = JSON.parse((await pd(2, ['doctor', '--expect-peers', '--json'])).stdout) as Report;
    const peersCheck = okJson.checks.find((x) => x.id === 'multicast-peers')!;
    t.equal(peersCheck.status, 'pass', peersCheck.detail);
    t.match(
      peersCheck.detail,
      new RegExp(`${d1!.retrieval.replace(/\./g, '\\.')}|${d3!.retrieval.replace(/\./g, '\\.')}`),
      'another daemon answered the liveness probe',
    );
    t.equal(
      okJson.checks.find((x) => x.id === 'retrieval-port')?.status,
      'pass',
      'MS-PCCRR answers on the advertised address',
    );

    const second = await c.download(2, 'f.bin');
    t.ok(second.correct);
    t.equal(second.fromPeers, SIZE, 'client 2 got the file from peers');
    const ex2 = JSON.parse((await pd(2, ['explain', c.url('f.bin'), '--json'])).stdout) as DownloadTrace;
    t.match(
      ex2.peers.find((p) => p.address === d1!.retrieval),
      { bytes: SIZE },
      'explain: client 1 served every block',
    );
    t.equal(ex2.origin.blocks, 0);
    t.ok(
      ex2.rounds.some((r) => r.answers.some((a) => a.peer === d1!.retrieval)),
      'explain: client 1 answered discovery',
    );
    const ex2text = await pd(2, ['explain']);
    t.comment(`$ peerdist explain\n${ex2text.stdout}`);
    const st2 = await pd(2, ['status']);
    t.comment(`$ peerdist status\n${st2.stdout}`);
    t.match(st2.stdout, /^last hour \(up \d+ min\): 2\.0 MiB downloaded, 100% from peers/m, 'status: share from peers');

    // The switch drops multicast now.
    await net.multicast(false);
    const bad = await pd(3, ['doctor', '--expect-peers']);
    t.comment(`$ peerdist doctor --expect-peers   (multicast dropped by the switch)\n${bad.stdout}`);
    t.equal(bad.code, 1, 'doctor exits 1: peer caching is blocked');
    const badJson = JSON.parse((await pd(3, ['doctor', '--expect-peers', '--json'])).stdout) as Report;
    t.match(
      badJson.checks.find((x) => x.id === 'multicast-peers'),
      { status: 'fail', remedy: /multicast/ },
      'no other daemon heard',
    );
    t.equal(
      badJson.checks.find((x) => x.id === 'multicast-self')?.status,
      'pass',
      'our own probe still loops back on this host',
    );

    const third = await c.download(3, 'f.bin');
    t.ok(third.correct, 'client 3 still gets a correct file');
    t.equal(third.fromOrigin, SIZE, 'all of it from the origin');
    const ex3 = JSON.parse((await pd(3, ['explain', '--json'])).stdout) as DownloadTrace;
    t.ok(
      ex3.rounds.length >= 1 && ex3.rounds.every((r) => r.answers.length === 0),
      `explain: ${ex3.rounds.length} discovery rounds, none answered`,
    );
    t.match(ex3.origin.byReason, { 'no-peer-found': { bytes: SIZE } }, 'every origin block: discovery found nobody');
    const ex3text = await pd(3, ['explain']);
    t.comment(`$ peerdist explain   (multicast dropped)\n${ex3text.stdout}`);
    t.match(ex3text.stdout, /^ {2}=> no peer answered discovery$/m);
  });
}
