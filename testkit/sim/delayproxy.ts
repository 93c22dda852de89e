/**
 * TCP delay proxy: adds a fixed one-way delay to every chunk in each direction, so a request/response
 * round trip through it costs at least 2 x delay, while the throughput of a long transfer is kept
 * (chunks are pipelined, not sent one at a time). Used to emulate WAN latency where `tc netem` is absent.
 * Backpressure: a direction holding more than `highWaterBytes` in flight pauses its source.
 * With `rateBytesPerSecond`, each direction of each connection is also a link of that rate: a chunk
 * leaves once the chunks before it have been sent at that rate, then takes the delay.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface DelayProxyOptions {
  listenHost: string;
  listenPort?: number;
  targetHost: string;
  targetPort: number;
  /** One-way delay per direction, ms. */
  delayMs: number;
  /** Rate of each direction of each connection, bytes per second (default: unlimited). */
  rateBytesPerSecond?: number;
  highWaterBytes?: number;
  /** Clock and timer injection for tests; defaults to the real ones. */
  now?: () => number;
}

export interface DelayProxy {
  host: string;
  port: number;
  stats(): { connections: number; upBytes: number; downBytes: number };
  close(): Promise<void>;
}

interface Pending {
  due: number;
  chunk: Buffer | null /* null = end of stream */;
}

/** Pipes src to dst delaying each chunk by delayMs; calls `count` with the bytes forwarded. */
export function delayedPipe(
  src: Socket,
  dst: Socket,
  delayMs: number,
  highWater: number,
  now: () => number,
  count: (n: number) => void,
  rateBytesPerSecond?: number,
): void {
  const queue: Pending[] = [];
  /** When the link has sent everything queued so far (ms, same clock as `now`). */
  let linkFree = 0;
  let queued = 0;
  let timer: NodeJS.Timeout | undefined;
  let paused = false;

  const flush = () => {
    timer = undefined;
    const t = now();
    while (queue.length > 0 && queue[0]!.due <= t) {
      const p = queue.shift()!;
      if (p.chunk === null) {
        if (!dst.destroyed) dst.end();
        return;
      }
      queued -= p.chunk.length;
      count(p.chunk.length);
      if (!dst.destroyed) dst.write(p.chunk);
    }
    if (paused && queued < highWater / 2 && dst.writableLength < highWater) {
      paused = false;
      src.resume();
    }
    schedule();
  };
  const schedule = () => {
    if (timer || queue.length === 0) return;
    timer = setTimeout(flush, Math.max(0, queue[0]!.due - now()));
  };
  src.on('data', (chunk: Buffer) => {
    linkFree = Math.max(now(), linkFree) + (rateBytesPerSecond ? (chunk.length * 1000) / rateBytesPerSecond : 0);
    queue.push({ due: linkFree + delayMs, chunk });
    queued += chunk.length;
    // What dst has not sent yet counts too: a slow receiver must not make us buffer without bound.
    if (queued + dst.writableLength >= highWater && !paused) {
      paused = true;
      src.pause();
    }
    schedule();
  });
  dst.on('drain', () => {
    if (paused && queued + dst.writableLength < highWater / 2) {
      paused = false;
      src.resume();
    }
  });
  // The source's end (or close without one) is forwarded as an end after the data before it:
  // dst.end() flushes what dst still buffers. (Destroying the other socket when one closed cut
  // the body an origin had sent just before closing: issue 27.16.)
  let ended = false;
  const endLater = () => {
    if (ended) return;
    ended = true;
    queue.push({ due: now() + delayMs, chunk: null });
    schedule();
  };
  src.on('end', endLater);
  src.on('close', endLater);
  dst.on('close', () => {
    // Nothing more can be delivered this way; the other direction finishes on its own.
    if (timer) clearTimeout(timer);
    timer = undefined;
    queue.length = 0;
    queued = 0;
    if (paused) {
      paused = false;
      src.resume();
    }
  });
}

export function startDelayProxy(opts: DelayProxyOptions): Promise<DelayProxy> {
  const now = opts.now ?? (() => performance.now());
  const highWater = opts.highWaterBytes ?? 4 * 1024 * 1024;
  const sockets = new Set<Socket>();
  const st = { connections: 0, upBytes: 0, downBytes: 0 };
  // Half-open on both sockets: each direction ends on its own when its source ended and its data
  // went out (an HTTP client may half-close after its request; the answer must still arrive).
  const server: Server = createServer({ allowHalfOpen: true }, (client) => {
    st.connections++;
    const upstream = connect({ host: opts.targetHost, port: opts.targetPort, allowHalfOpen: true });
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    sockets.add(client);
    sockets.add(upstream);
    const kill = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', kill);
    upstream.on('error', kill);
    client.on('close', () => sockets.delete(client));
    upstream.on('close', () => sockets.delete(upstream));
    delayedPipe(
      client,
      upstream,
      opts.delayMs,
      highWater,
      now,
      (n) => {
        st.upBytes += n;
      },
      opts.rateBytesPerSecond,
    );
    delayedPipe(
      upstream,
      client,
      opts.delayMs,
      highWater,
      now,
      (n) => {
        st.downBytes += n;
      },
      opts.rateBytesPerSecond,
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.listenPort ?? 0, opts.listenHost, () => {
      const addr = server.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      resolve({
        host: opts.listenHost,
        port,
        stats: () => ({ ...st }),
        close: () =>
          new Promise<void>((res) => {
            for (const s of sockets) s.destroy();
            server.close(() => res());
          }),
      });
    });
  });
}
