/**
 * Authorized content (`serve --require-jwt --jwks FILE|URL --audience A`): a request for content
 * (bytes or content information, any method, 304s included) needs `Authorization: Bearer <JWT>`
 * signed by a key of the JWKS, for the audience, not expired, whose prefix claim covers the
 * requested path (a tenant reads only its own prefix). Answers follow RFC 6750: 401 with
 * `WWW-Authenticate: Bearer ... error="invalid_token"` and the reason, 403 with
 * `error="insufficient_scope"`. Tokens are never logged. See protocol/pccrtp.md, "Authorized content".
 */
import { readFile } from 'node:fs/promises';
import { createLocalJWKSet, createRemoteJWKSet, errors, jwtVerify, type JWTVerifyGetKey } from 'jose';
import { PeerdistError } from '../util/errors.js';

export interface TokenGateOptions {
  /** A JWKS file path, or an http(s) URL serving one. */
  jwks: string;
  audience: string;
  issuer?: string;
  /** Claim naming the prefix (string, or array of strings) a token may read; default `peerdist_prefix`. */
  prefixClaim?: string;
}

export type GateResult = { ok: true } | { ok: false; status: 401 | 403; reason: string; header: string };

export const DEFAULT_PREFIX_CLAIM = 'peerdist_prefix';

function reasonOf(err: unknown): string {
  if (err instanceof errors.JWTExpired) return 'token expired';
  if (err instanceof errors.JWTClaimValidationFailed) return `claim ${err.claim} invalid: ${err.reason}`;
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'signature does not verify';
  if (err instanceof errors.JWKSNoMatchingKey) return 'no key in the JWKS matches the token';
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid) return 'malformed token';
  if (err instanceof errors.JOSEAlgNotAllowed || err instanceof errors.JOSENotSupported)
    return 'token algorithm not accepted';
  if (err instanceof errors.JWKSTimeout || err instanceof errors.JWKSInvalid) return 'key set unavailable';
  return 'token rejected';
}

/** Does `segments` (the decoded request path) lie under `prefix` ('/' or '' = everything)? */
export function underPrefix(segments: string[], prefix: string): boolean {
  const want = prefix.split('/').filter((s) => s !== '');
  if (want.length > segments.length) return false;
  return want.every((s, i) => segments[i] === s);
}

export class TokenGate {
  private constructor(
    private readonly keys: JWTVerifyGetKey,
    private readonly o: TokenGateOptions,
  ) {}

  static async create(o: TokenGateOptions): Promise<TokenGate> {
    let keys: JWTVerifyGetKey;
    if (/^https?:\/\//i.test(o.jwks)) {
      keys = createRemoteJWKSet(new URL(o.jwks), { timeoutDuration: 5_000, cooldownDuration: 30_000 });
    } else {
      try {
        keys = createLocalJWKSet(JSON.parse(await readFile(o.jwks, 'utf8')) as Parameters<typeof createLocalJWKSet>[0]);
      } catch (err) {
        throw new PeerdistError('BAD_CONFIG', `--jwks ${o.jwks}: ${(err as Error).message}`);
      }
    }
    return new TokenGate(keys, o);
  }

  private deny(status: 401 | 403, reason: string): GateResult {
    const error = status === 401 ? 'invalid_token' : 'insufficient_scope';
    return {
      ok: false,
      status,
      reason,
      header: `Bearer realm="peerdist", error="${error}", error_description="${reason.replace(/["\\]/g, "'")}"`,
    };
  }

  async check(authorization: string | undefined, segments: string[]): Promise<GateResult> {
    const m = /^\s*Bearer\s+([A-Za-z0-9_\-.~+/]+=*)\s*$/i.exec(authorization ?? '');
    if (!m) {
      return {
        ok: false,
        status: 401,
        reason: authorization === undefined ? 'bearer token required' : 'malformed Authorization header',
        header: 'Bearer realm="peerdist"',
      };
    }
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(m[1]!, this.keys, {
        audience: this.o.audience,
        ...(this.o.issuer ? { issuer: this.o.issuer } : {}),
        requiredClaims: ['exp'],
        algorithms: ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'],
      }));
    } catch (err) {
      return this.deny(401, reasonOf(err));
    }
    const claim = payload[this.o.prefixClaim ?? DEFAULT_PREFIX_CLAIM];
    const prefixes = typeof claim === 'string' ? [claim] : Array.isArray(claim) ? claim : [];
    if (prefixes.length === 0 || prefixes.some((p) => typeof p !== 'string'))
      return this.deny(403, `token has no ${this.o.prefixClaim ?? DEFAULT_PREFIX_CLAIM} claim`);
    if (!(prefixes as string[]).some((p) => underPrefix(segments, p)))
      return this.deny(403, 'path outside the prefix the token grants');
    return { ok: true };
  }
}
