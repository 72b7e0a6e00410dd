// Bearer-token authentication of a gRPC server's calls, as a server interceptor: a call whose
// metadata lacks `authorization: Bearer <token>` is answered UNAUTHENTICATED before its handler
// runs. Services named open (the health service, for probes) are not checked.
import { timingSafeEqual } from 'node:crypto';
import {
  Metadata,
  ServerInterceptingCall,
  ServerListenerBuilder,
  status as Status,
  type ServerInterceptor,
} from '@grpc/grpc-js';

/** The metadata key of the token (gRPC metadata keys are lower case). */
export const AUTHORIZATION = 'authorization';

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** The token a call's metadata carries (`authorization: Bearer <token>`), or null. */
export function bearerToken(metadata: Metadata): string | null {
  const v = metadata.get(AUTHORIZATION)[0];
  if (typeof v !== 'string') return null;
  const m = /^Bearer\s+(.+)$/i.exec(v.trim());
  return m ? m[1]! : null;
}

/** Metadata that carries `token` to a server guarded by tokenInterceptor. */
export function tokenMetadata(token: string): Metadata {
  const md = new Metadata();
  md.set(AUTHORIZATION, `Bearer ${token}`);
  return md;
}

/**
 * A server interceptor that refuses every call without the token, except calls to the
 * services in `open` (fully qualified names, e.g. 'grpc.health.v1.Health').
 */
export function tokenInterceptor(token: string, open: readonly string[] = []): ServerInterceptor {
  if (token === '') throw new Error('the API token must not be empty');
  const openPrefixes = open.map((s) => `/${s}/`);
  return (method, call) => {
    if (openPrefixes.some((p) => method.path.startsWith(p)))
      return new ServerInterceptingCall(call);
    return new ServerInterceptingCall(call, {
      start(next) {
        next(
          new ServerListenerBuilder()
            .withOnReceiveMetadata((metadata, mdNext) => {
              const got = bearerToken(metadata);
              if (got !== null && sameSecret(got, token)) {
                mdNext(metadata);
                return;
              }
              call.sendStatus({
                code: Status.UNAUTHENTICATED,
                details:
                  got === null
                    ? `${method.path}: this server needs a token (metadata 'authorization: Bearer <token>'; spinmesh --token or SPINMESH_TOKEN)`
                    : `${method.path}: the token is not valid`,
                metadata: new Metadata(),
              });
            })
            .build(),
        );
      },
    });
  };
}
