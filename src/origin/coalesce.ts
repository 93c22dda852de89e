/**
 * Joins the chunks a body stream delivers in one burst into one buffer (at most `maxBytes`), so a
 * relayed body reaches the response socket in fewer, larger writes.
 *
 * Why: a node relaying a blob from storage receives it in 64 KiB socket reads. Writing each of them
 * to the client on its own costs a write syscall, a wake-up of the reader and a pause/resume of the
 * storage socket per 64 KiB; profiled with bench/azblob.ts, that made the relaying process spend
 * more CPU than the storage server itself (BENCHMARKS.md, "Origin over Azure Blob Storage").
 *
 * Nothing is held back waiting for more: chunks are joined only while they arrive within one turn
 * of the event loop (libuv reads a socket repeatedly while data is queued), and what has gathered
 * is passed on at the end of that turn (setImmediate) or as soon as it reaches `maxBytes`. A slow
 * source is therefore forwarded as it arrives.
 */
import { Transform, type TransformCallback } from 'node:stream';

export function coalesce(maxBytes: number): Transform {
  let parts: Buffer[] = [];
  let held = 0;
  let timer: NodeJS.Immediate | undefined;
  const out = (t: Transform) => {
    if (held === 0) return;
    const b = parts.length === 1 ? parts[0]! : Buffer.concat(parts, held);
    parts = [];
    held = 0;
    t.push(b);
  };
  return new Transform({
    // One joined buffer may wait unread; behind it the usual backpressure applies.
    readableHighWaterMark: maxBytes,
    transform(this: Transform, chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      parts.push(chunk);
      held += chunk.length;
      if (held >= maxBytes) out(this);
      else
        timer ??= setImmediate(() => {
          timer = undefined;
          out(this);
        });
      cb();
    },
    flush(this: Transform, cb: TransformCallback) {
      if (timer !== undefined) clearImmediate(timer);
      timer = undefined;
      out(this);
      cb();
    },
    destroy(err: Error | null, cb: (err: Error | null) => void) {
      if (timer !== undefined) clearImmediate(timer);
      timer = undefined;
      parts = [];
      held = 0;
      cb(err);
    },
  });
}
