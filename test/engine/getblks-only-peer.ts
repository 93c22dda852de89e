/**
 * A v1 peer that implements only MSG_GETBLKS, like python-peerdist (and what iPXE relies on: it
 * never sends MSG_GETBLKLIST). It answers MSG_GETBLKLIST (and anything else but MSG_GETBLKS) with
 * HTTP 400, serves the blocks it holds encrypted under Kp, answers an empty MSG_BLK for a block it
 * lacks, and is announced over real discovery with the BlockCount of what it holds.
 */
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { blockRange, type ContentInfo, type SegmentInfo } from '../../src/protocol/pccrc/types.js';
import { Discovery } from '../../src/discovery/discovery.js';
import { decodeRequest, encodeResponse, PCCRR_PATH, type ResponseMessage } from '../../src/protocol/pccrr/codec.js';
import { encryptBlock } from '../../src/protocol/pccrr/crypto.js';

export interface GetblksOnlyPeer {
  address: string;
  /** Requests by PCCRR message type (GETBLKS, GETBLKLIST, ...) and the HTTP 400 answers. */
  counts: Record<string, number>;
  /** MSG_BLK answers that carried a block. */
  blocksServed: number;
  close(): Promise<void>;
}

/** `holds(segIndex, blockIndex)`: which blocks the peer has (default: all). */
export async function startGetblksOnlyPeer(opts: {
  host: string;
  ci: ContentInfo;
  data: Buffer;
  discoveryPort: number;
  holds?: (seg: number, index: number) => boolean;
}): Promise<GetblksOnlyPeer> {
  const { ci, data } = opts;
  const holds = opts.holds ?? (() => true);
  const segs = new Map<string, SegmentInfo>(ci.segments.map((s) => [s.segmentId.toString('hex'), s]));
  const counts: Record<string, number> = {};
  const state = { blocksServed: 0 };
  const sockets = new Set<Socket>();
  const send = (res: ServerResponse, m: ResponseMessage) => {
    const body = encodeResponse(m);
    res.writeHead(200, { 'Content-Length': body.length }).end(body);
  };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if ((req.url ?? '').toLowerCase() !== PCCRR_PATH.toLowerCase()) {
        res.writeHead(404).end();
        return;
      }
      let m: ReturnType<typeof decodeRequest>;
      try {
        m = decodeRequest(Buffer.concat(chunks));
      } catch {
        counts.http400 = (counts.http400 ?? 0) + 1;
        res.writeHead(400, { 'Content-Length': 0 }).end();
        return;
      }
      counts[m.type] = (counts[m.type] ?? 0) + 1;
      if (m.type !== 'GETBLKS') {
        counts.http400 = (counts.http400 ?? 0) + 1;
        res.writeHead(400, { 'Content-Length': 0 }).end();
        return;
      }
      const seg = segs.get(m.segmentId.toString('hex'));
      const index = m.ranges[0]![0];
      const empty: ResponseMessage = {
        type: 'BLK',
        segmentId: m.segmentId,
        blockIndex: index,
        nextBlockIndex: 0,
        block: Buffer.alloc(0),
        iv: Buffer.alloc(0),
      };
      if (!seg || !holds(seg.index, index)) return send(res, empty);
      const [s, e] = blockRange(1, seg, index);
      if (e <= s) return send(res, empty);
      const { cipher, iv } = encryptBlock(1, seg.kp, data.subarray(seg.offset + s, seg.offset + e));
      state.blocksServed++;
      return send(res, {
        type: 'BLK',
        cryptoAlgo: 1,
        segmentId: m.segmentId,
        blockIndex: index,
        nextBlockIndex: 0,
        block: cipher,
        iv,
      });
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, opts.host, () => resolve());
  });
  const address = `${opts.host}:${(server.address() as AddressInfo).port}`;
  const discovery = new Discovery({
    port: opts.discoveryPort,
    interfaces: ['127.0.0.1'],
    loopback: true,
    xaddrs: () => [address],
    lookup: (ids) =>
      ids.map((id) => {
        const s = segs.get(id.toString('hex'));
        if (!s) return undefined;
        let n = 0;
        for (let i = 0; i < Math.ceil(s.length / 65536); i++) if (holds(s.index, i)) n++;
        return n > 0 ? { blockCount: n, complete: false } : undefined;
      }),
  });
  await discovery.start();
  return {
    address,
    counts,
    get blocksServed() {
      return state.blocksServed;
    },
    close: async () => {
      await discovery.close();
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
