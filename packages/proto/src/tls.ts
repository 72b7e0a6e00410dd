// TLS for every gRPC listener and channel of a spinmesh process, from PEM files named by the
// environment: SPINMESH_TLS_CERT + SPINMESH_TLS_KEY make this process's servers speak TLS;
// SPINMESH_TLS_CA makes its channels speak TLS and trust that CA (the system's roots when
// SPINMESH_TLS=1 is set without a CA). Peers authenticate with the cluster secret on top.
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';

/** The TLS files of a process. */
export interface TlsConfig {
  /** This process's certificate chain and key (PEM): its servers speak TLS. null: plaintext. */
  server: { certFile: string; keyFile: string } | null;
  /**
   * How its channels connect: null = plaintext; { caFile: null } = TLS trusting the system's
   * roots; { caFile } = TLS trusting that CA (PEM).
   */
  client: { caFile: string | null } | null;
}

/** An environment variable with a bad value (same shape as the services' ConfigError). */
export class TlsConfigError extends Error {
  override readonly name = 'TlsConfigError';
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable} ${message}`);
  }
}

type Env = Readonly<Record<string, string | undefined>>;

/**
 * Reads SPINMESH_TLS_CERT, SPINMESH_TLS_KEY, SPINMESH_TLS_CA and SPINMESH_TLS.
 * @throws what `error` makes of a bad variable (a service's own ConfigError); TlsConfigError by default
 */
export function tlsFromEnv(
  env: Env = process.env,
  error: (variable: string, message: string) => Error = (v, m) => new TlsConfigError(v, m),
): TlsConfig {
  const get = (n: string): string | undefined => {
    const v = env[n]?.trim();
    return v === undefined || v === '' ? undefined : v;
  };
  const certFile = get('SPINMESH_TLS_CERT');
  const keyFile = get('SPINMESH_TLS_KEY');
  if ((certFile === undefined) !== (keyFile === undefined))
    throw error(
      certFile === undefined ? 'SPINMESH_TLS_CERT' : 'SPINMESH_TLS_KEY',
      'must be set too: TLS needs both SPINMESH_TLS_CERT and SPINMESH_TLS_KEY',
    );
  const flag = get('SPINMESH_TLS') ?? '0';
  if (flag !== '0' && flag !== '1') throw error('SPINMESH_TLS', `must be 0 or 1 (got '${flag}')`);
  const caFile = get('SPINMESH_TLS_CA') ?? null;
  return {
    server: certFile !== undefined && keyFile !== undefined ? { certFile, keyFile } : null,
    client: caFile !== null || flag === '1' ? { caFile } : null,
  };
}

/** No TLS anywhere. */
export const PLAINTEXT: TlsConfig = { server: null, client: null };

function readPem(file: string, variable: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new TlsConfigError(
      variable,
      `names ${file}, which cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
    );
  }
}

/** Credentials for a server of this process. @throws TlsConfigError naming an unreadable file */
export function serverCredentials(tls: TlsConfig): grpc.ServerCredentials {
  if (!tls.server) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(null, [
    {
      cert_chain: readPem(tls.server.certFile, 'SPINMESH_TLS_CERT'),
      private_key: readPem(tls.server.keyFile, 'SPINMESH_TLS_KEY'),
    },
  ]);
}

/** Credentials for a channel of this process. @throws TlsConfigError naming an unreadable file */
export function channelCredentials(tls: TlsConfig): grpc.ChannelCredentials {
  if (!tls.client) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(
    tls.client.caFile === null ? null : readPem(tls.client.caFile, 'SPINMESH_TLS_CA'),
  );
}
