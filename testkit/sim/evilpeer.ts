/**
 * A malicious peer for the simulation: it learns a file's content information from the origin like
 * any client, then answers every discovery probe for those segments as a complete holder and
 * serves each block with one byte flipped (or as random bytes). Well-formed MS-PCCRR, wrong data:
 * honest daemons must reject every such block by its hash and still produce a correct file.
 */
import { open } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { parseContentInfo } from '../../src/protocol/pccrc/codec.js';
import {
  blockCount,
  blockRange,
  type ContentInfo,
  type ContentVersion,
  type SegmentInfo,
} from '../../src/protocol/pccrc/types.js';
import { clientRequestHeaders, parsePeerDistResponse } from '../../src/protocol/pccrtp/headers.js';
import { createRetrievalServer, type RetrievalStats } from '../../src/retrieval/server.js';
import { Discovery } from '../../src/discovery/discovery.js';

export interface EvilPeerOptions {
  /** URL of the content on the origin. */
  url: string;
  /** The real content (to corrupt one byte per block); without it blocks are random bytes. */
  file?: string;
  listenHost: string;
  /** Discovery interface address; 127.x means loopback mode (several peers on one host). */
  interfaceAddress: string;
  discoveryPort: number;
  corruption?: 'flip' | 'random';
}

export interface EvilPeer {
  address: string;
  segments: number;
  stats(): RetrievalStats;
  close(): Promise<void>;
}

/** Fetches the content information of `url` for one version (HTTP GET offering the peerdist coding). */
export function fetchContentInfo(url: string, version: ContentVersion): Promise<ContentInfo | undefined> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      url,
      { headers: clientRequestHeaders({ maxContentVersion: version, hashRequest: true }), timeout: 60_000 },
      (res) => {
        const info = parsePeerDistResponse(res.headers);
        if (res.statusCode !== 200 || !info.peerdist) {
          res.resume();
          resolve(undefined);
          return;
        }
        const parts: Buffer[] = [];
        let n = 0;
        res.on('data', (d: Buffer) => {
          n += d.length;
          if (n <= 64 << 20) parts.push(d);
        });
        res.on('end', () => {
          try {
            resolve(parseContentInfo(Buffer.concat(parts)));
          } catch (e) {
            reject(e);
          }
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('content information request timed out')));
    req.on('error', reject);
  });
}

export async function startEvilPeer(o: EvilPeerOptions): Promise<EvilPeer> {
  const segs = new Map<string, { version: ContentVersion; seg: SegmentInfo }>();
  for (const v of [1, 2] as const) {
    const ci = await fetchContentInfo(o.url, v);
    if (ci && ci.version === v)
      for (const seg of ci.segments) segs.set(seg.segmentId.toString('hex'), { version: v, seg });
  }
  if (segs.size === 0) throw new Error(`no content information for ${o.url}`);
  const fh = o.file ? await open(o.file, 'r') : undefined;
  const find = (id: Buffer) => segs.get(id.toString('hex'));
  const all = (id: Buffer) => {
    const s = find(id);
    return s ? Array.from({ length: blockCount(s.version, s.seg) }, (_, i) => i) : [];
  };
  const server = createRetrievalServer({
    host: o.listenHost,
    port: 0,
    source: {
      getSegment: (id) => {
        const s = find(id);
        return s && { version: s.version, kp: s.seg.kp, length: s.seg.length, blockSize: s.seg.blockSize };
      },
      hasBlock: (id, index) => {
        const s = find(id);
        return s !== undefined && index >= 0 && index < blockCount(s.version, s.seg);
      },
      presentBlocks: all,
      readBlock: async (id, index) => {
        const s = find(id);
        if (!s || index < 0 || index >= blockCount(s.version, s.seg)) return undefined;
        const [start, end] = blockRange(s.version, s.seg, index);
        const len = end - start;
        if (!fh || o.corruption === 'random') return randomBytes(len);
        const buf = Buffer.alloc(len);
        await fh.read(buf, 0, len, s.seg.offset + start);
        buf[len >> 1] = buf[len >> 1]! ^ 0xff;
        return buf;
      },
    },
  });
  const addr = await server.listen();
  const address = `${addr.host}:${addr.port}`;
  const discovery = new Discovery({
    port: o.discoveryPort,
    interfaces: [o.interfaceAddress],
    loopback: o.interfaceAddress.startsWith('127.'),
    xaddrs: () => [address],
    lookup: (ids) =>
      ids.map((id) => {
        const s = find(id);
        return s ? { blockCount: blockCount(s.version, s.seg), complete: true } : undefined;
      }),
  });
  await discovery.start();
  return {
    address,
    segments: segs.size,
    stats: () => server.stats(),
    close: async () => {
      await discovery.close();
      await server.close();
      await fh?.close();
    },
  };
}

export interface TarpitOptions {
  listenHost: string;
  interfaceAddress: string;
  discoveryPort: number;
  /** Ports that accept connections and never answer (default 16). */
  sockets?: number;
  /** Other host:port pairs to name in every ProbeMatch too (an origin, another daemon's port). */
  extraXAddrs?: string[];
}

export interface TarpitStats {
  /** TCP connections accepted by the tarpit ports, by source address. */
  connections: Record<string, number>;
  /** When (ms since the epoch) each source connected to each tarpit address, key "from -> host:port". */
  attempts: Record<string, number[]>;
  /** HTTP requests received by the tarpit's "other service" port (answers 404), by source address. */
  serviceRequests: Record<string, number>;
  probeMatches: number;
}

export interface TarpitPeer {
  xaddrs: string[];
  stats(): TarpitStats;
  close(): Promise<void>;
}

/**
 * Issue 16.5: a LAN host that answers every discovery probe, for any segment, as a complete
 * holder, naming `sockets` ports that accept TCP connections and never send a byte, one plain
 * HTTP service that answers 404 (like an admin API or a web server), and `extraXAddrs` (e.g. the
 * origin's port). The list is rotated on every answer, so a client that only takes the first few
 * XAddrs of each ProbeMatch still meets new addresses every time.
 */
export async function startTarpitPeer(o: TarpitOptions): Promise<TarpitPeer> {
  const st: TarpitStats = { connections: {}, attempts: {}, serviceRequests: {}, probeMatches: 0 };
  const sockets = new Set<import('node:net').Socket>();
  const servers: import('node:net').Server[] = [];
  const { createServer } = await import('node:net');
  const listen = (srv: import('node:net').Server) =>
    new Promise<number>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(0, o.listenHost, () => resolve((srv.address() as import('node:net').AddressInfo).port));
    });
  const addrs: string[] = [];
  for (let i = 0; i < (o.sockets ?? 16); i++) {
    const srv = createServer((s) => {
      const from = s.remoteAddress ?? '?';
      st.connections[from] = (st.connections[from] ?? 0) + 1;
      const key = `${from} -> ${o.listenHost}:${(s.address() as import('node:net').AddressInfo).port}`;
      st.attempts[key] = [...(st.attempts[key] ?? []), Date.now()];
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
      s.resume(); // read and drop the request; never answer
    });
    servers.push(srv);
    addrs.push(`${o.listenHost}:${await listen(srv)}`);
  }
  const service = http.createServer((req, res) => {
    const from = req.socket.remoteAddress ?? '?';
    st.serviceRequests[from] = (st.serviceRequests[from] ?? 0) + 1;
    req.resume();
    res.writeHead(404, { 'Content-Length': 0 }).end();
  });
  service.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  servers.push(service);
  addrs.push(`${o.listenHost}:${await listen(service)}`);
  const all = [...addrs, ...(o.extraXAddrs ?? [])];
  let turn = 0;
  const discovery = new Discovery({
    port: o.discoveryPort,
    interfaces: [o.interfaceAddress],
    loopback: o.interfaceAddress.startsWith('127.'),
    xaddrs: () => {
      const k = turn++ % all.length;
      st.probeMatches++;
      return [...all.slice(k), ...all.slice(0, k)];
    },
    // Everything, complete: v1 a full 32 MiB segment's BlockCount, v2 "complete".
    lookup: (ids, version) => ids.map(() => ({ blockCount: version === 1 ? 512 : 1, complete: true })),
  });
  await discovery.start();
  return {
    xaddrs: all,
    stats: () => ({
      connections: { ...st.connections },
      attempts: structuredClone(st.attempts),
      serviceRequests: { ...st.serviceRequests },
      probeMatches: st.probeMatches,
    }),
    close: async () => {
      await discovery.close();
      for (const s of sockets) s.destroy();
      await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  };
}
