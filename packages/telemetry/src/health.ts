// A client of the gRPC health-checking protocol (grpc.health.v1.Health/Check): what a container
// healthcheck runs against its own service, as the images carry no grpc_health_probe.
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { HealthClient, ServingStatus, tlsFromEnv } from '@spinmesh/proto';

export interface HealthCheckOptions {
  /** The service to ask about; '' is the server as a whole. @defaultValue '' */
  service?: string;
  /** Deadline of the call, in ms. @defaultValue 3000 */
  timeoutMs?: number;
  /**
   * TLS, trusting these PEM certificates. The server's name is not checked: a probe dials its
   * own service by a loopback address its certificate does not name. @defaultValue plaintext
   */
  rootCerts?: Buffer;
}

/** What a Check answered. */
export interface HealthCheckResult {
  serving: boolean;
  /** SERVING, NOT_SERVING, ... or the gRPC error when the call failed. */
  detail: string;
}

/** Asks the server at `address` (host:port) whether it serves. Never throws. */
export function checkHealth(
  address: string,
  options: HealthCheckOptions = {},
): Promise<HealthCheckResult> {
  const credentials = options.rootCerts
    ? grpc.credentials.createSsl(options.rootCerts, null, null, {
        checkServerIdentity: () => undefined,
      })
    : grpc.credentials.createInsecure();
  // (A name for TLS's server name indication, which may not be an IP address.)
  const client = new HealthClient(
    address,
    credentials,
    options.rootCerts ? { 'grpc.ssl_target_name_override': 'localhost' } : {},
  );
  const deadline = new Date(Date.now() + (options.timeoutMs ?? 3000));
  return new Promise<HealthCheckResult>((resolve) => {
    client.check(
      { service: options.service ?? '' },
      new grpc.Metadata(),
      { deadline },
      (err, res) => {
        client.close();
        if (err) resolve({ serving: false, detail: `${grpc.status[err.code]}: ${err.details}` });
        else
          resolve({
            serving: res.status === ServingStatus.SERVING,
            detail: ServingStatus[res.status] ?? String(res.status),
          });
      },
    );
  });
}

/**
 * The address to probe a server bound to `listen` at: the loopback address for a wildcard
 * host (0.0.0.0, ::). @throws RangeError for port 0 (nothing fixed to probe)
 */
export function probeAddress(listen: string): string {
  const i = listen.lastIndexOf(':');
  const host = listen.slice(0, i);
  const port = listen.slice(i + 1);
  if (port === '0') throw new RangeError(`${listen}: a server on port 0 cannot be probed`);
  if (host === '0.0.0.0' || host === '') return `127.0.0.1:${port}`;
  if (host === '::' || host === '[::]') return `[::1]:${port}`;
  return listen;
}

/**
 * What a probe of this process's own server trusts when SPINMESH_TLS_CERT and SPINMESH_TLS_KEY
 * make it speak TLS: its certificate file (self-signed, or with its chain), the CA of
 * SPINMESH_TLS_CA and the system's roots. undefined: the server speaks plaintext.
 * @throws naming a variable whose file cannot be read
 */
export function ownServerRoots(
  env: Readonly<Record<string, string | undefined>> = process.env,
): Buffer | undefined {
  const tls = tlsFromEnv(env);
  if (!tls.server) return undefined;
  const read = (file: string, variable: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (e) {
      throw new Error(`${variable}: ${file} cannot be read (${(e as NodeJS.ErrnoException).code})`);
    }
  };
  return Buffer.concat([
    read(tls.server.certFile, 'SPINMESH_TLS_CERT'),
    Buffer.from('\n'),
    ...(tls.client?.caFile ? [read(tls.client.caFile, 'SPINMESH_TLS_CA'), Buffer.from('\n')] : []),
    Buffer.from(rootCertificates.join('\n')),
  ]);
}

/**
 * The body of a service's container healthcheck: probes its own server at the address `listen()`
 * returns (its config), over TLS when the service's own certificate says so, prints the answer,
 * and exits 0 (serving), 1 (not serving or unreachable) or 2 (a bad setting).
 */
export async function runHealthcheck(service: string, listen: () => string): Promise<never> {
  let address: string;
  let rootCerts: Buffer | undefined;
  try {
    address = probeAddress(listen());
    rootCerts = ownServerRoots();
  } catch (err) {
    process.stderr.write(`${service} healthcheck: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const result = await checkHealth(address, rootCerts ? { rootCerts } : {});
  process.stdout.write(`${address}: ${result.detail}\n`);
  process.exit(result.serving ? 0 : 1);
}
