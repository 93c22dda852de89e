/**
 * Serving files from the published directory: safe path mapping (symlinks may not leave the
 * root), validators, conditional and single-range requests, and the PeerDist answer.
 */
import { open, realpath, stat, type FileHandle } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { hashFile } from './hash-file.js';
import { encodeContentInfo } from '../protocol/pccrc/codec.js';
import type { ContentVersion } from '../protocol/pccrc/types.js';
import { isNotModified } from './conditional.js';
import { fileCacheKey, type Chunking, type FileIdentity } from './hashcache.js';
import { makeHashRequestHeaders, type Negotiation } from '../protocol/pccrtp/headers.js';
import { tryPeerDist, type PeerDistContext } from './peerdist-response.js';
import { planBody } from './range.js';
import type { Producer } from './hashjobs.js';
import { countBody, plainError, str } from './respond.js';

export interface FileContext extends PeerDistContext {
  /** realpath of the served directory. */
  rootReal: string;
  secret: Buffer;
  chunking: Chunking;
  /** Serve names starting with '.' (default false: 404). */
  allowDotfiles?: boolean;
}

export type Resolved = { ok: true; path: string } | { ok: false; status: 403 | 404 };

/** Joins segments under the root and refuses anything whose real path is not strictly inside it. */
export async function resolveUnderRoot(rootReal: string, segments: string[]): Promise<Resolved> {
  if (segments.length === 0) return { ok: false, status: 404 };
  let real: string;
  try {
    real = await realpath(join(rootReal, ...segments));
  } catch {
    return { ok: false, status: 404 };
  }
  if (!real.startsWith(rootReal.endsWith(sep) ? rootReal : rootReal + sep)) return { ok: false, status: 403 };
  return { ok: true, path: real };
}

export function identityOf(path: string, st: { size: bigint; mtimeNs: bigint; ino: bigint }): FileIdentity {
  return { path, size: Number(st.size), mtimeNs: st.mtimeNs, ino: st.ino };
}

/** Strong ETag from inode, size and mtime (ns). */
export function fileEtag(id: FileIdentity): string {
  return `"${id.ino.toString(16)}-${id.size.toString(16)}-${id.mtimeNs.toString(16)}"`;
}

/** Hashes a file and checks it did not change while being read. */
export function fileProducer(ctx: FileContext, id: FileIdentity, version: ContentVersion): Producer {
  return async (signal) => {
    const ci = await hashFile(id.path, { secret: ctx.secret, version, chunking: ctx.chunking, signal });
    const after = await stat(id.path, { bigint: true });
    if (
      ci.contentLength !== id.size ||
      Number(after.size) !== id.size ||
      after.mtimeNs !== id.mtimeNs ||
      after.ino !== id.ino
    ) {
      throw new Error(`${id.path} changed while it was being hashed`);
    }
    return encodeContentInfo(ci);
  };
}

export async function serveFile(
  ctx: FileContext,
  req: IncomingMessage,
  res: ServerResponse,
  n: Negotiation,
  segments: string[],
): Promise<void> {
  const r = await resolveUnderRoot(ctx.rootReal, segments);
  if (!r.ok) return plainError(res, r.status);
  // A symlink with an ordinary name may resolve into a hidden name (cfg -> .git/config): the real
  // path under the root must not have one either.
  if (
    !ctx.allowDotfiles &&
    relative(ctx.rootReal, r.path)
      .split(sep)
      .some((s) => s.startsWith('.'))
  )
    return plainError(res, 404);
  let fh: FileHandle;
  try {
    fh = await open(r.path, 'r');
  } catch {
    return plainError(res, 404);
  }
  let handedOff = false;
  try {
    const st = await fh.stat({ bigint: true });
    if (!st.isFile()) return plainError(res, 404);
    const id = identityOf(r.path, st);
    const lastModifiedMs = Number(st.mtimeNs / 1_000_000n);
    const headers: Record<string, string> = {
      ETag: fileEtag(id),
      'Last-Modified': new Date(lastModifiedMs).toUTCString(),
      'Content-Type': 'application/octet-stream',
      Vary: 'Accept-Encoding',
    };
    if (
      isNotModified(
        str(req.headers['if-none-match']),
        str(req.headers['if-modified-since']),
        headers['ETag'],
        lastModifiedMs,
      )
    ) {
      ctx.stats.notModified++;
      res.writeHead(304, headers).end();
      return;
    }
    const rangeHeader = str(req.headers.range);
    if (req.method === 'GET' && n.peerdist && n.contentVersion && id.size > 0 && rangeHeader === undefined) {
      const key = fileCacheKey(id, { version: n.contentVersion, chunking: ctx.chunking, secret: ctx.secret });
      const outcome = await tryPeerDist(
        ctx,
        req,
        res,
        n,
        key,
        fileProducer(ctx, id, n.contentVersion),
        headers,
        id.size,
      );
      if (outcome === 'sent') return;
      Object.assign(headers, makeHashRequestHeaders());
      ctx.stats.makeHashRequests++;
    }
    const plan = planBody({ range: rangeHeader, 'if-range': str(req.headers['if-range']) }, headers, id.size, res);
    if (!plan) return;
    const { status, start, end, length } = plan;
    res.writeHead(status, headers);
    if (req.method === 'HEAD' || length === 0) {
      res.end();
      return;
    }
    res.on('finish', () => countBody(ctx, n, length));
    handedOff = true;
    const stream = fh.createReadStream({ start, end, autoClose: true });
    await pipeline(stream, res).catch(() => undefined); // client went away: nothing to do
  } finally {
    if (!handedOff) await fh.close();
  }
}
