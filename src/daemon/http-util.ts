/** Small helpers shared by the daemon's HTTP front ends (admin API, proxy). */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const data = Buffer.from(JSON.stringify(body) + '\n');
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': data.length,
    'cache-control': 'no-store',
  });
  res.end(data);
}

export function sendText(
  res: ServerResponse,
  status: number,
  body: string,
  contentType = 'text/plain; charset=utf-8',
): void {
  const data = Buffer.from(body);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, { 'content-type': contentType, 'content-length': data.length });
  res.end(data);
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string' && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}

/** HTTP status an engine error maps to: the origin's own status when the error carries one, else 502. */
export function upstreamStatus(err: unknown): number {
  const s =
    (err as { status?: unknown; statusCode?: unknown } | null)?.status ??
    (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof s === 'number' && s >= 400 && s <= 599 ? s : 502;
}

export interface ListeningServer {
  server: Server;
  close(): Promise<void>;
}

/** Creates an HTTP server for `handler`, listening on a TCP host:port or a socket path. */
export function listenHttp(
  where: { host: string; port: number } | { path: string },
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<ListeningServer & { address: AddressInfo | string }> {
  const server = createServer(handler);
  server.keepAliveTimeout = 5_000;
  return new Promise((resolveP, reject) => {
    server.once('error', reject);
    const done = () => {
      server.off('error', reject);
      const a = server.address();
      resolveP({
        server,
        address: a ?? ('path' in where ? where.path : ''),
        close: () =>
          new Promise<void>((r) => {
            server.close(() => r());
            server.closeAllConnections();
          }),
      });
    };
    if ('path' in where) server.listen(where.path, done);
    else server.listen(where.port, where.host, done);
  });
}
