/**
 * Real-module test rig for the download engine: an origin (createOriginServer) on 127.0.0.1 and
 * nodes on 127.0.0.x, each with its own BlockStore, PCCRR server + client, Discovery on a shared
 * random loopback port, and a DownloadEngine. Everything is closed in t.teardown.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { request } from 'undici';
import { BlockStore } from '../../src/cache/store.js';
import { Discovery } from '../../src/discovery/discovery.js';
import type { ProberTiming } from '../../src/discovery/prober.js';
import { DownloadEngine, type EngineOptions, type RetrievalLike } from '../../src/engine/engine.js';
import { createOriginServer, type OriginServer } from '../../src/origin/server.js';
import { clientRequestHeaders } from '../../src/protocol/pccrtp/headers.js';
import { RetrievalClient } from '../../src/retrieval/client.js';
import { createRetrievalServer, type BlockSource, type RetrievalServer } from '../../src/retrieval/server.js';

export const MiB = 1024 * 1024;
export const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

export async function tmp(t: Test, prefix: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), `peerdist-${prefix}-`));
  t.teardown(() => rm(d, { recursive: true, force: true }));
  return d;
}

/** Deterministic-enough test payload (random bytes, so blocks differ). */
export function payload(size: number): Buffer {
  return randomBytes(size);
}

export interface Origin {
  server: OriginServer;
  /** The served directory (tests may change files under the origin). */
  root: string;
  base: string;
  url(name: string): string;
  /** Makes the origin hash `name` now (HashRequest), so downloads get content information. */
  warm(name: string, version: 1 | 2): Promise<void>;
  stop(): Promise<void>;
}

export async function startOrigin(
  t: Test,
  files: Record<string, Buffer>,
  opts: { firstWaitMs?: number } = {},
): Promise<Origin> {
  const root = await tmp(t, 'origin-root');
  const stateDir = await tmp(t, 'origin-state');
  for (const [name, data] of Object.entries(files)) await writeFile(join(root, name), data);
  const server = await createOriginServer({
    root,
    stateDir,
    host: '127.0.0.1',
    port: 0,
    chunking: 'fixed',
    firstWaitMs: opts.firstWaitMs,
  });
  const { port } = await server.listen();
  let stopped = false;
  const stop = async () => {
    if (!stopped) {
      stopped = true;
      await server.close();
    }
  };
  t.teardown(stop);
  const base = `http://127.0.0.1:${port}`;
  return {
    server,
    root,
    base,
    stop,
    url: (name) => `${base}/${name}`,
    warm: async (name, version) => {
      const res = await request(`${base}/${name}`, {
        headers: clientRequestHeaders({ maxContentVersion: version, hashRequest: true }),
      });
      await res.body.arrayBuffer();
      if (res.headers['content-encoding'] !== 'peerdist') throw new Error(`origin did not hash ${name}`);
    },
  };
}

export interface Node {
  address: string;
  store: BlockStore;
  engine: DownloadEngine;
  retrievalServer: RetrievalServer;
  discovery: Discovery;
  close(): Promise<void>;
}

export const testPort = () => 20000 + Math.floor(Math.random() * 40000);

export async function startNode(
  t: Test,
  n: number,
  discoveryPort: number,
  opts: {
    engine?: Partial<EngineOptions>;
    /** Serve blocks through this wrapper (e.g. a corrupting peer). */
    source?: (store: BlockStore) => BlockSource;
    /** Discovery prober timing (e.g. a longer initial wait on a loaded machine). */
    timing?: Partial<ProberTiming>;
    /** Wraps the PCCRR client (instrumentation). */
    wrapRetrieval?: (r: RetrievalLike) => RetrievalLike;
  } = {},
): Promise<Node> {
  const dir = await tmp(t, `node${n}`);
  const store = await BlockStore.open({ dir, limitBytes: 512 * MiB, fsync: false });
  const host = `127.0.0.${n}`;
  const retrievalServer = createRetrievalServer({ source: opts.source ? opts.source(store) : store, host, port: 0 });
  const bound = await retrievalServer.listen();
  const address = `${host}:${bound.port}`;
  const discovery = new Discovery({
    port: discoveryPort,
    interfaces: ['127.0.0.1'],
    loopback: true,
    timing: opts.timing,
    xaddrs: () => [address],
    lookup: (ids, version) =>
      ids.map((id) => {
        if (!store.getSegment(id)) return undefined;
        const complete = store.isComplete(id);
        const blockCount = version === 2 ? (complete ? 1 : 0) : store.presentBlocks(id).length;
        return blockCount > 0 ? { blockCount, complete } : undefined;
      }),
  });
  await discovery.start();
  const retrieval = new RetrievalClient({ requestTimeoutMs: 3000 });
  const engine = new DownloadEngine({
    store,
    discovery,
    retrieval: opts.wrapRetrieval ? opts.wrapRetrieval(retrieval) : retrieval,
    ...opts.engine,
  });
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await engine.close();
    await retrieval.close();
    await discovery.close();
    await retrievalServer.close();
    await store.close();
  };
  t.teardown(close);
  return { address, store, engine, retrievalServer, discovery, close };
}

/** Reads a whole stream. */
export async function readAll(s: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s as AsyncIterable<Buffer>) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}
