/**
 * A small HTTP load balancer for tests and the simulation: the normal deployment of several origin
 * nodes puts one in front of them. Requests go round robin to the backends that are up; a backend
 * is taken out when a connection to it fails or its health check (GET `healthPath`, any answer
 * below 500) fails, and put back when a check passes. A request whose backend fails before any
 * response byte is sent on to the next backend (GET and HEAD only); one whose backend dies in
 * the middle of the body is cut off (the client sees a reset and asks again, landing elsewhere).
 * Loopback only in tests; no TLS.
 */
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo, connect, createServer as createTcpServer, type Socket } from 'node:net';

export interface BalancerOptions {
  /** Backends as host:port. */
  backends: string[];
  host?: string;
  port?: number;
  /** Health check period (default 200 ms). */
  healthIntervalMs?: number;
  /** Health check path (default /.peerdist/stats, which every `peerdist serve` answers). */
  healthPath?: string;
  /** Called as response body bytes from a backend pass (its running total). */
  onBytes?: (backend: string, total: number) => void;
}

export interface BackendView {
  address: string;
  up: boolean;
  /** Requests sent to it (every attempt). */
  requests: number;
  /** Attempts that failed at the connection (before a response). */
  failures: number;
  /** Response body bytes relayed from it. */
  bytes: number;
}

export interface Balancer {
  /** host:port the balancer listens on. */
  address: string;
  backends(): BackendView[];
  close(): Promise<void>;
}

const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer']);

export async function startBalancer(opts: BalancerOptions): Promise<Balancer> {
  const list: BackendView[] = opts.backends.map((address) => ({
    address,
    up: true,
    requests: 0,
    failures: 0,
    bytes: 0,
  }));
  let next = 0;
  const sockets = new Set<Socket>();
  const healthPath = opts.healthPath ?? '/.peerdist/stats';

  const pick = (tried: Set<BackendView>): BackendView | undefined => {
    for (let k = 0; k < list.length; k++) {
      const b = list[(next + k) % list.length]!;
      if (b.up && !tried.has(b)) {
        next = (next + k + 1) % list.length;
        return b;
      }
    }
    return undefined;
  };

  const forward = (req: IncomingMessage, res: ServerResponse, tried: Set<BackendView>): void => {
    const b = pick(tried);
    if (!b) {
      res.writeHead(502, { 'content-type': 'text/plain', connection: 'close' });
      res.end('no backend available\n');
      return;
    }
    tried.add(b);
    b.requests++;
    const [host, port] = splitHostPort(b.address);
    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !HOP.has(k)) headers[k] = v;
    const up = request({ host, port, method: req.method, path: req.url, headers, agent: false }, (ur) => {
      const out: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(ur.headers)) if (v !== undefined && !HOP.has(k)) out[k] = v;
      res.writeHead(ur.statusCode ?? 502, ur.statusMessage, out);
      ur.on('data', (d: Buffer) => {
        b.bytes += d.length;
        opts.onBytes?.(b.address, b.bytes);
      });
      ur.pipe(res);
      // The backend died mid-body: cut the client off (a short body must not look complete).
      ur.once('aborted', () => res.destroy());
      ur.once('error', () => res.destroy());
    });
    up.once('error', () => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      b.failures++;
      b.up = false;
      const idempotent = req.method === 'GET' || req.method === 'HEAD';
      if (idempotent) forward(req, res, tried);
      else {
        res.writeHead(502, { connection: 'close' });
        res.end();
      }
    });
    res.once('close', () => {
      if (!res.writableFinished) up.destroy();
    });
    // Request bodies are not replayed: GET and HEAD have none; others are streamed once.
    if (req.method === 'GET' || req.method === 'HEAD') up.end();
    else req.pipe(up);
  };

  const server: Server = createServer((req, res) => forward(req, res, new Set()));
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  const a = server.address() as AddressInfo;

  const check = (b: BackendView): Promise<void> =>
    new Promise((resolve) => {
      const [host, port] = splitHostPort(b.address);
      const r = request({ host, port, path: healthPath, agent: false, timeout: 2000 }, (res) => {
        res.resume();
        b.up = (res.statusCode ?? 500) < 500;
        resolve();
      });
      r.once('timeout', () => r.destroy(new Error('health check timed out')));
      r.once('error', () => {
        b.up = false;
        resolve();
      });
      r.end();
    });
  let checking = false;
  const timer = setInterval(() => {
    if (checking) return;
    checking = true;
    void Promise.all(list.map(check)).finally(() => {
      checking = false;
    });
  }, opts.healthIntervalMs ?? 200);
  timer.unref();

  return {
    address: `${a.address}:${a.port}`,
    backends: () => list.map((b) => ({ ...b })),
    close: async () => {
      clearInterval(timer);
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function splitHostPort(address: string): [string, number] {
  const i = address.lastIndexOf(':');
  return [address.slice(0, i).replace(/^\[|\]$/g, ''), Number(address.slice(i + 1))];
}

export interface Relay {
  /** host:port clients connect to. */
  address: string;
  /** Bytes relayed from the target to clients so far. */
  bytesDown(): number;
  /**
   * The node behind it is gone: every connection is reset and new ones are refused (the
   * listener closes), as when the node's machine dies.
   */
  cut(): Promise<void>;
}

/**
 * A TCP relay in front of one node (`target` host:port): lets a test make the node vanish at an
 * exact point of a download (`onBytes` sees the running total of bytes sent to clients).
 */
export async function startRelay(opts: {
  target: string;
  host?: string;
  port?: number;
  onBytes?: (total: number) => void;
}): Promise<Relay> {
  const [th, tp] = splitHostPort(opts.target);
  const conns = new Set<Socket>();
  let down = 0;
  let cutDone: Promise<void> | undefined;
  const server = createTcpServer((client) => {
    const upstream = connect(tp, th);
    conns.add(client);
    conns.add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      conns.delete(client);
      conns.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    upstream.on('data', (d: Buffer) => {
      if (cutDone) return;
      down += d.length;
      opts.onBytes?.(down);
    });
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  const a = server.address() as AddressInfo;
  return {
    address: `${a.address}:${a.port}`,
    bytesDown: () => down,
    cut: () => {
      cutDone ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of conns) s.resetAndDestroy();
        conns.clear();
      });
      return cutDone;
    },
  };
}
