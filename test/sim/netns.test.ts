/**
 * The namespace lab itself: hosts on a private bridge, isolation from the host's interfaces,
 * tbf shaping, multicast across the bridge, the delay proxy inside a namespace, cleanup and the
 * stale-namespace sweep. Skips unless running as root with iproute2.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NetnsLab, listNamespaces, netnsSupport, sweepStaleNamespaces, type NsHost } from '../../testkit/sim/netns.js';
import { agentEntry } from '../../testkit/sim/entrypoints.js';
import { writePayload } from '../../testkit/sim/files.js';
import { lastJsonLine } from '../../testkit/sim/harness.js';

const support = await netnsSupport();
if (!support.ok) {
  t.plan(0, `network namespaces unavailable: ${support.reason}`);
} else {
  const rootLinks = () =>
    execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' })
      .split('\n')
      .map((l) => l.split(':')[1]?.trim().split('@')[0])
      .filter(Boolean)
      .sort();
  const linksBefore = rootLinks();
  const lab = await NetnsLab.create();
  t.teardown(() => lab.destroy());
  const a = await lab.addHost('a', 2);
  const b = await lab.addHost('b', 3);
  const c = await lab.addHost('c', 4);
  const dir = await mkdtemp(join(tmpdir(), 'pdsim-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = await writePayload(join(dir, 'f.bin'), 3 * 1024 * 1024, 'netns');

  const serve = async (h: NsHost) => {
    const child = lab.spawn(h, process.execPath, [
      agentEntry,
      'serve-file',
      '--listen',
      `${h.address}:8080`,
      '--dir',
      dir,
    ]);
    t.teardown(() => child.stop());
    await child.firstJsonLine((v) => v.event === 'ready', 10_000);
    return child;
  };
  const fetch = async (h: NsHost, url: string) => {
    const r = await lab.run(h, process.execPath, [agentEntry, 'fetch', url], { timeoutMs: 60_000 });
    const j = lastJsonLine(r.stdout);
    if (!j) throw new Error(`fetch failed: ${r.stderr}`);
    return j as { status: number; bytes: number; seconds: number; sha256: string };
  };

  t.test('hosts reach each other over the bridge; the host namespace is untouched', async (t) => {
    t.ok(listNamespaces(lab.prefix).length >= 4, 'switch + 3 host namespaces exist');
    t.same(rootLinks(), linksBefore, 'no interface added to the host namespace');
    await serve(a);
    const r = await fetch(b, `http://${a.address}:8080/f.bin`);
    t.equal(r.status, 200);
    t.equal(r.bytes, file.size);
    t.equal(r.sha256, file.sha256, 'file arrives intact across the bridge');
    const route = await lab.run(c, 'ip', ['route', 'show']);
    t.match(route.stdout, /224\.0\.0\.0\/4 dev eth0/, 'multicast routed via the host link');
    t.notMatch(route.stdout, /default/, 'no default route out of the lab');
  });

  t.test('multicast from one host reaches the others across the bridge', async (t) => {
    const group = '239.255.255.250';
    const port = '3702';
    const recv = [b, c].map((h) =>
      lab.spawn(h, process.execPath, [
        agentEntry,
        'mcast-recv',
        '--group',
        group,
        '--port',
        port,
        '--iface',
        h.address,
        '--timeout-ms',
        '8000',
      ]),
    );
    for (const r of recv) t.teardown(() => r.stop());
    const readies = recv.map((r) => r.firstJsonLine((v) => v.event === 'ready', 10_000));
    await Promise.all(readies);
    const got = recv.map((r) => r.firstJsonLine((v) => 'from' in v || 'timeout' in v, 10_000));
    // Retry a few times: a datagram sent before a membership settles can be lost.
    let results: Array<Record<string, unknown>> = [];
    for (let i = 0; i < 5; i++) {
      const s = await lab.run(a, process.execPath, [
        agentEntry,
        'mcast-send',
        '--group',
        group,
        '--port',
        port,
        '--iface',
        a.address,
        '--message',
        'hello-lab',
      ]);
      t.equal(s.code, 0, 'sent');
      const settled = await Promise.race([
        Promise.all(got),
        new Promise<undefined>((r) => setTimeout(() => r(undefined), 500)),
      ]);
      if (settled) {
        results = settled;
        break;
      }
    }
    t.equal(results.length, 2, 'both receivers finished');
    for (const r of results) t.same(r, { from: a.address, message: 'hello-lab' });
  });

  t.test("tbf shaping limits a host's egress rate", async (t) => {
    const rate = 8_000_000; // 8 Mbit/s -> 3 MiB takes about 3.1 s
    await lab.shape(a, { rateBps: rate, latencyMs: 200 });
    t.match(await lab.qdisc(a), /tbf .*rate 8Mbit/);
    const r = await fetch(b, `http://${a.address}:8080/f.bin`);
    t.equal(r.sha256, file.sha256, 'intact through the shaper');
    const bps = (r.bytes * 8) / r.seconds;
    t.ok(bps <= rate * 1.15, `measured ${(bps / 1e6).toFixed(2)} Mbit/s <= 8 Mbit/s (+15% for the initial burst)`);
    t.ok(bps >= rate * 0.3, `measured ${(bps / 1e6).toFixed(2)} Mbit/s is not starved`);
    // The other direction (b's egress) is not shaped: b -> a goes fast.
    await serve(b);
    const back = await fetch(a, `http://${b.address}:8080/f.bin`);
    t.ok(
      (back.bytes * 8) / back.seconds > rate * 1.5,
      `unshaped direction runs at ${((back.bytes * 8) / back.seconds / 1e6).toFixed(0)} Mbit/s`,
    );
  });

  t.test('the delay proxy inside a namespace adds its delay to a request', async (t) => {
    const proxy = lab.spawn(c, process.execPath, [
      agentEntry,
      'delay-proxy',
      '--listen',
      `${c.address}:81`,
      '--target',
      `${b.address}:8080`,
      '--delay-ms',
      '150',
    ]);
    t.teardown(() => proxy.stop());
    await proxy.firstJsonLine((v) => v.event === 'ready', 10_000);
    const direct = await fetch(a, `http://${b.address}:8080/nothing`);
    const viaProxy = await fetch(a, `http://${c.address}:81/nothing`);
    t.equal(direct.status, 404);
    t.equal(viaProxy.status, 404, 'request forwarded to the target');
    t.ok(viaProxy.seconds >= 0.29, `via proxy ${viaProxy.seconds.toFixed(3)} s >= 2 x 150 ms`);
    const full = await fetch(a, `http://${c.address}:81/f.bin`);
    t.equal(full.sha256, file.sha256, 'file intact through the proxy');
  });

  t.test('destroy removes every namespace and kills its processes; the sweep removes stale ones', async (t) => {
    const lab2 = await NetnsLab.create();
    const h = await lab2.addHost('x', 9);
    const sleeper = lab2.spawn(h, process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
    t.ok(listNamespaces(lab2.prefix).length === 2, 'lab2 namespaces exist');
    lab2.destroySync();
    t.equal(listNamespaces(lab2.prefix).length, 0, 'lab2 namespaces removed');
    const code = await Promise.race([sleeper.exited, new Promise((r) => setTimeout(() => r('still running'), 5000))]);
    t.not(code, 'still running', 'process inside the namespace was killed');

    // A namespace left by a dead run (pid that does not exist) is swept.
    let dead = 4_000_000;
    while (dead < 4_194_304) {
      try {
        process.kill(dead, 0);
        dead++;
      } catch {
        break;
      }
    }
    const stale = `pdsim-${dead}-1-sw`;
    execFileSync('ip', ['netns', 'add', stale]);
    t.teardown(() => {
      try {
        execFileSync('ip', ['netns', 'del', stale], { stdio: 'ignore' });
      } catch {
        /* swept */
      }
    });
    const removed = sweepStaleNamespaces();
    t.ok(removed.includes(stale), 'stale namespace swept');
    t.ok(listNamespaces(lab.prefix).length >= 4, 'the live lab is left alone');
  });
}
