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
import { blockCount, blockRange, type ContentInfo, type ContentVersion, type SegmentInfo } from '../../src/protocol/pccrc/types.js';
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
    const req = http.get(url, { headers: clientRequestHeaders({ maxContentVersion: version, hashRequest: true }), timeout: 60_000 }, (res) => {
      const info = parsePeerDistResponse(res.headers);
      if (res.statusCode !== 200 || !info.peerdist) { res.resume(); resolve(undefined); return; }
      const parts: Buffer[] = [];
      let n = 0;
      res.on('data', (d: Buffer) => { n += d.length; if (n <= 64 << 20) parts.push(d); });
      res.on('end', () => { try { resolve(parseContentInfo(Buffer.concat(parts))); } catch (e) { reject(e); } });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('content information request timed out')));
    req.on('error', reject);
  });
}

export async function startEvilPeer(o: EvilPeerOptions): Promise<EvilPeer> {
  const segs = new Map<string, { version: ContentVersion; seg: SegmentInfo }>();
  for (const v of [1, 2] as const) {
    const ci = await fetchContentInfo(o.url, v);
    if (ci && ci.version === v) for (const seg of ci.segments) segs.set(seg.segmentId.toString('hex'), { version: v, seg });
  }
  if (segs.size === 0) throw new Error(`no content information for ${o.url}`);
  const fh = o.file ? await open(o.file, 'r') : undefined;
  const find = (id: Buffer) => segs.get(id.toString('hex'));
  const all = (id: Buffer) => { const s = find(id); return s ? Array.from({ length: blockCount(s.version, s.seg) }, (_, i) => i) : []; };
  const server = createRetrievalServer({
    host: o.listenHost, port: 0,
    source: {
      getSegment: (id) => { const s = find(id); return s && { version: s.version, kp: s.seg.kp, length: s.seg.length, blockSize: s.seg.blockSize }; },
      hasBlock: (id, index) => { const s = find(id); return s !== undefined && index >= 0 && index < blockCount(s.version, s.seg); },
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
    port: o.discoveryPort, interfaces: [o.interfaceAddress], loopback: o.interfaceAddress.startsWith('127.'),
    xaddrs: () => [address],
    lookup: (ids) => ids.map((id) => { const s = find(id); return s ? { blockCount: blockCount(s.version, s.seg), complete: true } : undefined; }),
  });
  await discovery.start();
  return {
    address, segments: segs.size, stats: () => server.stats(),
    close: async () => { await discovery.close(); await server.close(); await fh?.close(); },
  };
}
