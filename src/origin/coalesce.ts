/**
 * Relays a body stream to a writable (the client's response) in fewer, larger writes, without
 * copying: the chunks a source delivers in one burst are written while the destination is corked,
 * and reach the socket together in one writev when it is uncorked.
 *
 * Why: a node relaying a blob from storage receives it in 64 KiB socket reads. Writing each of them
 * to the client on its own costs a write syscall, a wake-up of the reader and a pause/resume of the
 * storage socket per 64 KiB; profiled with bench/azblob.ts, that made the relaying process spend
 * more CPU than the storage server itself (BENCHMARKS.md, "Origin over Azure Blob Storage"). The
 * first fix joined the chunks with Buffer.concat: a copy of every byte, 16% of the node's CPU in
 * the next profile, and more garbage to collect; corking gathers the same writes with no copy.
 *
 * Nothing is held back waiting for more: the destination is corked only while chunks arrive within
 * one turn of the event loop (libuv reads a socket repeatedly while data is queued), and uncorked
 * at the end of that turn (setImmediate) or as soon as `maxBytes` have gathered. A slow source is
 * therefore forwarded as it arrives. Backpressure: the source pauses when the destination asks
 * for it (write() false) once the turn holds `maxBytes`, or at the end of the turn, until 'drain'.
 *
 * Resolves when the destination has finished; rejects (and destroys the source) when the source
 * fails or the destination closes or fails first. The destination is never ended after a source
 * failure, so a response cut short stays visibly short.
 */
import type { Readable, Writable } from 'node:stream';

export function relayCoalesced(source: Readable, dest: Writable, maxBytes: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let held = 0;
    let corked = false;
    let waiting = false;
    let settled = false;
    let timer: NodeJS.Immediate | undefined;

    const flush = () => {
      if (timer !== undefined) clearImmediate(timer);
      timer = undefined;
      if (!corked) return;
      corked = false;
      held = 0;
      dest.uncork();
    };
    const onDrain = () => {
      waiting = false;
      if (!settled) source.resume();
    };
    const waitDrain = () => {
      source.pause();
      if (waiting) return;
      waiting = true;
      dest.once('drain', onDrain);
    };
    const onData = (chunk: Buffer) => {
      if (!corked) {
        corked = true;
        dest.cork();
        timer = setImmediate(() => {
          timer = undefined;
          flush();
          if (dest.writableNeedDrain) waitDrain();
        });
      }
      held += chunk.length;
      const ok = dest.write(chunk);
      if (held >= maxBytes) {
        flush();
        if (!ok || dest.writableNeedDrain) waitDrain();
      }
    };
    const done = (err?: Error) => {
      if (settled) return;
      settled = true;
      if (timer !== undefined) clearImmediate(timer);
      source.off('data', onData);
      source.off('end', onEnd);
      source.off('error', onSourceError);
      dest.off('error', onDestError);
      dest.off('close', onDestClose);
      dest.off('finish', onFinish);
      dest.off('drain', onDrain);
      if (err) {
        // Still corked: what the destination holds is dropped with it by the caller (destroy).
        source.destroy();
        reject(err);
      } else resolve();
    };
    const onEnd = () => {
      flush();
      dest.end();
    };
    const onFinish = () => done();
    const onSourceError = (err: Error) => done(err);
    const onDestError = (err: Error) => done(err);
    const onDestClose = () => {
      if (!dest.writableFinished) done(new Error('the destination closed before the body was complete'));
    };
    source.on('data', onData);
    source.once('end', onEnd);
    source.once('error', onSourceError);
    dest.once('error', onDestError);
    dest.once('close', onDestClose);
    dest.once('finish', onFinish);
  });
}
