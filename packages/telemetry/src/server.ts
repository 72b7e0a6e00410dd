// The HTTP endpoint of a service's metrics (node:http, no framework): GET /metrics in
// Prometheus's text format, GET /healthz for a liveness probe. Before each scrape the service
// may refresh what it computes on demand (jobs by state, a shard's figures); a refresh that
// fails is reported and the scrape still answers with the rest.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface MetricsServerOptions {
  registry: Registry;
  /** `host:port`; port 0 picks a free one. */
  listen: string;
  /** Called before each scrape; awaited, at most `refreshTimeoutMs`. */
  beforeScrape?: () => void | Promise<void>;
  /** Longest wait for beforeScrape, in ms. @defaultValue 5000 */
  refreshTimeoutMs?: number;
  /** /healthz answers 200 when this says true, else 503. @defaultValue always healthy */
  healthy?: () => boolean;
  /** A refresh or a request failed (the service logs it). */
  onError?: (err: unknown) => void;
}

/** A running metrics endpoint. */
export interface MetricsServer {
  /** `host:port` it listens on (the port picked when `listen` said 0). */
  readonly address: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Splits `host:port` (`[::1]:9464` too). @throws RangeError for anything else */
export function parseHostPort(s: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new RangeError(`'${s}' is not host:port`);
  return { host: m[1]!.replace(/^\[(.*)\]$/, '$1'), port };
}

/** Starts serving /metrics and /healthz. */
export async function startMetricsServer(opts: MetricsServerOptions): Promise<MetricsServer> {
  const { host, port } = parseHostPort(opts.listen);
  const timeoutMs = opts.refreshTimeoutMs ?? 5000;
  const refresh = async (): Promise<void> => {
    if (!opts.beforeScrape) return;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        Promise.resolve().then(opts.beforeScrape),
        new Promise<void>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`metrics refresh took over ${timeoutMs} ms`)),
            timeoutMs,
          );
        }),
      ]);
    } catch (err) {
      opts.onError?.(err);
    } finally {
      clearTimeout(timer);
    }
  };
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === '/metrics') {
      await refresh();
      const body = await opts.registry.metrics();
      res.writeHead(200, { 'content-type': opts.registry.contentType }).end(body);
    } else if (path === '/healthz') {
      const ok = opts.healthy?.() ?? true;
      res
        .writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' })
        .end(ok ? 'ok\n' : 'unhealthy\n');
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
    }
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      opts.onError?.(err);
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('metrics failed\n');
    });
  });
  // Scrapers keep connections alive; close() must not wait for them.
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => opts.onError?.(err));
  const bound = (server.address() as AddressInfo).port;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  let closing: Promise<void> | null = null;
  return {
    address: `${shownHost}:${bound}`,
    port: bound,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
