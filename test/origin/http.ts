/** HTTP helpers for origin tests: a started origin on 127.0.0.1, undici requests, raw socket requests. */
import { connect } from 'node:net';
import { createHash, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { Agent, request } from 'undici';
import type { ContentInfo } from '../../src/protocol/pccrc/types.js';
import { segmentIdOf, segmentSecret, serverSecret } from '../../src/protocol/pccrc/keys.js';
import { createOriginServer, type OriginServer, type OriginServerOptions } from '../../src/origin/server.js';
import type { Teardown } from './tmp.js';

let key: KeyObject | undefined;
/** One signing key per test process (RSA generation is slow). */
export function testSigningKey(): KeyObject {
  key ??= generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  return key;
}

export interface Started {
  server: OriginServer;
  base: string;
  port: number;
  agent: Agent;
}

export async function startOrigin(t: Teardown, opts: OriginServerOptions): Promise<Started> {
  const server = await createOriginServer({ signingKey: testSigningKey(), ...opts });
  const { port } = await server.listen();
  const agent = new Agent();
  t.teardown(async () => {
    await agent.close();
    await server.close();
  });
  return { server, base: `http://127.0.0.1:${port}`, port, agent };
}

export interface Got {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

export async function get(
  s: Started,
  path: string,
  headers: Record<string, string> = {},
  method: 'GET' | 'HEAD' | 'POST' = 'GET',
): Promise<Got> {
  const r = await request(s.base + path, {
    method,
    headers,
    dispatcher: s.agent,
    headersTimeout: 30_000,
    bodyTimeout: 30_000,
  });
  const body = Buffer.from(await r.body.arrayBuffer());
  const h: Record<string, string> = {};
  for (const [k, v] of Object.entries(r.headers)) if (v !== undefined) h[k] = Array.isArray(v) ? v.join(', ') : v;
  return { status: r.statusCode, headers: h, body };
}

/** Sends a request-target byte-for-byte (no client-side normalisation) and returns the status and body text. */
export function rawGet(port: number, target: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`raw GET ${target} timed out`));
    }, 10_000);
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      resolve({ status: m ? Number(m[1]) : 0, text });
    });
    sock.write(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
  });
}

/** Asserts (by recomputation) that `ci` describes exactly `data` hashed with `secret`; returns a reason or undefined. */
export function describesData(ci: ContentInfo, data: Buffer, secret: Buffer): string | undefined {
  if (ci.contentLength !== data.length || ci.rangeStart !== 0 || ci.rangeEnd !== data.length) return 'lengths';
  const ks = serverSecret(ci.version, secret);
  let offset = 0;
  for (const seg of ci.segments) {
    if (seg.offset !== offset) return `segment ${seg.index} offset`;
    const bytes = data.subarray(offset, offset + seg.length);
    let hod: Buffer;
    if (ci.version === 1) {
      const bh: Buffer[] = [];
      for (let i = 0; i < bytes.length; i += 65536)
        bh.push(
          createHash('sha256')
            .update(bytes.subarray(i, i + 65536))
            .digest(),
        );
      if (bh.length !== seg.blockHashes.length || bh.some((h, i) => !h.equals(seg.blockHashes[i]!)))
        return `segment ${seg.index} block hashes`;
      hod = createHash('sha256').update(Buffer.concat(bh)).digest();
    } else {
      hod = createHash('sha512').update(bytes).digest().subarray(0, 32);
    }
    if (!hod.equals(seg.hod)) return `segment ${seg.index} HoD`;
    const kp = segmentSecret(ci.version, ks, hod);
    if (!kp.equals(seg.kp)) return `segment ${seg.index} Kp`;
    if (!segmentIdOf(ci.version, kp, hod).equals(seg.segmentId)) return `segment ${seg.index} segment ID`;
    offset += seg.length;
  }
  return offset === data.length ? undefined : 'segments do not cover the data';
}
