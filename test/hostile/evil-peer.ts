/**
 * Malicious MS-PCCRR peers for the hostile tests: a node:http server on 127.0.0.x that claims to
 * hold every block of the given content (BLKLIST: everything) and misbehaves on MSG_GETBLKS in one
 * of several ways, announced by a real Discovery responder as a complete holder.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { blockRange, type ContentInfo, type SegmentInfo } from '../../src/protocol/pccrc/types.js';
import { Discovery } from '../../src/discovery/discovery.js';
import {
  decodeRequest,
  encodeResponse,
  PCCRR_PATH,
  SUPPORTED_MAX,
  SUPPORTED_MIN,
  type ResponseMessage,
} from '../../src/protocol/pccrr/codec.js';
import { encryptBlock } from '../../src/protocol/pccrr/crypto.js';

export type EvilMode =
  | 'wrong-data' // well-formed BLK, encrypted with the right key, random plaintext
  | 'wrong-segment' // right block, another SegmentID echoed
  | 'wrong-index' // the next block, labelled as such
  | 'truncated' // Content-Length of the whole answer, half of it sent, connection closed
  | 'short-message' // complete HTTP answer whose PCCRR message is cut short
  | 'stall' // status line and headers, then nothing
  | 'drip' // the right answer, one byte every 100 ms (never idle long enough for a first-byte timer)
  | 'flood'; // 200 with an endless body

export interface EvilPeer {
  address: string;
  mode: EvilMode;
  getblks: number;
  bytesSent: number;
  close(): Promise<void>;
}

export async function startEvilPeer(opts: {
  host: string;
  mode: EvilMode;
  ci: ContentInfo;
  data: Buffer;
  discoveryPort: number;
}): Promise<EvilPeer> {
  const { ci, data, mode } = opts;
  const segs = new Map<string, SegmentInfo>(ci.segments.map((s) => [s.segmentId.toString('hex'), s]));
  const sockets = new Set<Socket>();
  const state = { getblks: 0, bytesSent: 0 };
  const plain = (seg: SegmentInfo, index: number) => {
    const [s, e] = blockRange(1, seg, index);
    return data.subarray(seg.offset + s, seg.offset + e);
  };
  const send = (res: import('node:http').ServerResponse, m: ResponseMessage) => {
    const body = encodeResponse(m);
    state.bytesSent += body.length;
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
      const m = decodeRequest(Buffer.concat(chunks));
      if (m.type === 'NEGO_REQ') return send(res, { type: 'NEGO_RESP', min: SUPPORTED_MIN, max: SUPPORTED_MAX });
      if (m.type === 'GETSEGLIST')
        return send(res, { type: 'SEGLIST', requestId: m.requestId, ranges: [[0, m.segmentIds.length]] });
      const seg = segs.get(m.segmentId.toString('hex'));
      if (m.type === 'GETBLKLIST')
        return send(res, { type: 'BLKLIST', segmentId: m.segmentId, ranges: m.ranges, nextBlockIndex: 0 });
      state.getblks++;
      const index = m.ranges[0]![0];
      if (!seg)
        return send(res, {
          type: 'BLK',
          segmentId: m.segmentId,
          blockIndex: index,
          nextBlockIndex: 0,
          block: Buffer.alloc(0),
          iv: Buffer.alloc(0),
        });
      const blk = (segmentId: Buffer, i: number, p: Buffer): ResponseMessage => {
        const { cipher, iv } = encryptBlock(1, seg.kp, p);
        return { type: 'BLK', cryptoAlgo: 1, segmentId, blockIndex: i, nextBlockIndex: 0, block: cipher, iv };
      };
      const real = plain(seg, index);
      switch (mode) {
        case 'wrong-data':
          return send(res, blk(m.segmentId, index, randomBytes(real.length)));
        case 'wrong-segment':
          return send(res, blk(randomBytes(32), index, real));
        case 'wrong-index':
          return send(res, blk(m.segmentId, index + 1, real));
        case 'truncated': {
          const body = encodeResponse(blk(m.segmentId, index, real));
          res.writeHead(200, { 'Content-Length': body.length });
          res.write(body.subarray(0, body.length >> 1), () => res.destroy());
          state.bytesSent += body.length >> 1;
          return;
        }
        case 'short-message': {
          const body = encodeResponse(blk(m.segmentId, index, real));
          const cut = body.subarray(0, body.length - 100);
          state.bytesSent += cut.length;
          res.writeHead(200, { 'Content-Length': cut.length }).end(cut);
          return;
        }
        case 'stall':
          res.writeHead(200, { 'Content-Length': 70_000 });
          res.flushHeaders();
          return; // never more
        case 'drip': {
          const body = encodeResponse(blk(m.segmentId, index, real));
          res.writeHead(200, { 'Content-Length': body.length });
          let at = 0;
          const timer = setInterval(() => {
            if (res.destroyed || at >= body.length) {
              clearInterval(timer);
              return;
            }
            res.write(body.subarray(at, ++at));
            state.bytesSent++;
          }, 100);
          res.on('close', () => clearInterval(timer));
          return;
        }
        case 'flood': {
          res.writeHead(200, { 'Content-Type': 'application/octet-stream' }); // chunked, no length
          const chunk = randomBytes(64 * 1024);
          const pump = () => {
            // Our own bound: at most 64 MiB per answer, so a broken client cannot make the test run forever.
            while (!res.destroyed && state.bytesSent < 64 * 1024 * 1024 * (state.getblks + 1)) {
              state.bytesSent += chunk.length;
              if (!res.write(chunk)) {
                res.once('drain', pump);
                return;
              }
            }
            res.end();
          };
          pump();
          return;
        }
      }
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
        return s ? { blockCount: Math.ceil(s.length / 65536), complete: true } : undefined;
      }),
  });
  await discovery.start();
  return {
    address,
    mode,
    get getblks() {
      return state.getblks;
    },
    get bytesSent() {
      return state.bytesSent;
    },
    close: async () => {
      await discovery.close();
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
