/**
 * Advertising what was dropped (issue 12.6): after a cached block fails verification and is
 * dropped, the daemon no longer answers probes, block lists or block requests as if it held it.
 * A real daemon (startDaemon, in-process) on loopback; a bare prober and PCCRR client as the peer.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createOriginServer } from '../../src/origin/server.js';
import { resolveConfig } from '../../src/daemon/config.js';
import { startDaemon } from '../../src/daemon/daemon.js';
import { Discovery } from '../../src/discovery/discovery.js';
import { RetrievalClient } from '../../src/retrieval/client.js';
import { nullLogger } from '../../src/util/log.js';
import { freeUdpPort } from './daemon-child.js';

for (const version of [1, 2] as const) {
  t.test(`v${version}: a dropped block is no longer announced or listed`, async (t) => {
    const root = await mkdtemp(join(tmpdir(), 'pd-dropped-'));
    t.teardown(() => rm(root, { recursive: true, force: true }));
    await mkdir(join(root, 'www'));
    await writeFile(join(root, 'www', 'f.bin'), randomBytes(1024 * 1024 + 777));
    const origin = await createOriginServer({
      root: join(root, 'www'),
      stateDir: join(root, 'origin'),
      host: '127.0.0.1',
      port: 0,
      chunking: 'fixed',
    });
    const o = await origin.listen();
    t.teardown(() => origin.close());
    const discoveryPort = await freeUdpPort();
    const config = resolveConfig({
      defaultStateDir: join(root, 'd'),
      flags: {
        listen: '127.0.0.5:0',
        interface: '127.0.0.1',
        admin: '127.0.0.1:0',
        discoveryPort: String(discoveryPort),
        presence: false,
        maxContentVersion: String(version),
      },
    });
    const d = await startDaemon(config, { logger: nullLogger });
    t.teardown(() => d.close());
    await d.engine.download(`http://127.0.0.1:${o.port}/f.bin`).done;

    const segs = d.store.list().sort((a, b) => a.segmentId.localeCompare(b.segmentId));
    const seg = segs[0]!;
    const id = Buffer.from(seg.segmentId, 'hex');
    const bad = seg.blocksTotal > 2 ? 2 : 0;
    t.ok(d.store.isComplete(id), 'the daemon holds the whole segment');

    // Corrupt the block on disk (v1: in the segment file, v2: in a pack file).
    const where = d.store.blockFile(id, bad)!;
    t.ok(where.path.startsWith(join(config.stateDir, 'cache')), `the block is in ${where.path}`);
    const fh = await open(where.path, 'r+');
    await fh.write(Buffer.from('corrupted!'), 0, 10, where.offset + 100);
    await fh.close();

    // A peer asks for it: the daemon finds the mismatch while serving, answers "not available", drops it.
    const client = new RetrievalClient({ requestTimeoutMs: 3000 });
    t.teardown(() => client.close());
    const peer = d.ready.retrieval;
    const raw = await client.getRawBlock({ peer, segmentId: id, index: bad }).catch((e: { code?: string }) => e.code);
    t.ok(
      raw === 'PEER_NOT_AVAILABLE' || (typeof raw === 'object' && raw.block.length === 0),
      `the corrupt block is not served (${typeof raw === 'string' ? raw : 'empty MSG_BLK'})`,
    );
    t.notOk(d.store.hasBlock(id, bad), 'and it was dropped from the cache');
    t.equal(d.store.stats().corruptBlocks, 1);

    // Block list (v1; for v2 the one block of the segment).
    const list = await client.getBlockList({ peer, segmentId: id, ranges: [[0, seg.blocksTotal]] });
    const listed = list.ranges.flatMap(([s, n]) => Array.from({ length: n }, (_, k) => s + k));
    t.notOk(listed.includes(bad), `MSG_BLKLIST no longer lists block ${bad}: ${JSON.stringify(list.ranges)}`);
    t.equal(listed.length, seg.blocksTotal - 1, 'every other block still listed');
    const again = await client.getRawBlock({ peer, segmentId: id, index: bad }).catch((e: { code?: string }) => e.code);
    t.ok(
      again === 'PEER_NOT_AVAILABLE' || (typeof again === 'object' && again.block.length === 0),
      'asked again: still not available',
    );

    // Probes: a prober on the same discovery port asks for the damaged and an intact segment.
    const other = segs[1] ? Buffer.from(segs[1].segmentId, 'hex') : undefined;
    const prober = new Discovery({
      port: discoveryPort,
      interfaces: ['127.0.0.1'],
      loopback: true,
      xaddrs: () => [],
      lookup: (ids) => ids.map(() => undefined),
    });
    await prober.start();
    t.teardown(() => prober.close());
    const w = prober.watch(other ? [id, other] : [id], version);
    t.teardown(() => w.close());
    await w.waitForPeers(3000);
    if (other) {
      for (let i = 0; i < 30 && w.peers(other).length === 0; i++) await new Promise((r) => setTimeout(r, 100));
      t.equal(w.peers(other).length, 1, 'the intact segment is announced (the probe got through)');
    }
    const seen = w.peers(id);
    if (version === 1) {
      t.equal(seen.length, 1, 'v1: the damaged segment is still announced (it holds the other blocks)');
      t.equal(seen[0]?.blockCount, seg.blocksTotal - 1, `with ${seg.blocksTotal - 1} blocks, not ${seg.blocksTotal}`);
      t.equal(seen[0]?.complete, false, 'and not as complete');
    } else {
      t.equal(seen.length, 0, 'v2: the segment whose only block was dropped is not announced at all');
    }
  });
}
