/**
 * The secured connection between the sender daemon (client) and the receiver daemon (listener):
 * TCP, then one of three modes (docs/security.md).
 *
 *   tls       TLS 1.3, both ends present a certificate signed by the configured CA; optionally each
 *             end accepts only peers whose certificate names one of `peerNames` (CN, DNS or IP SAN)
 *   psk       TLS 1.3 with a pre-shared key (external PSK, (EC)DHE key exchange, no certificates)
 *   insecure  plain TCP, for a link that is already protected (a VPN, a lab); never a default
 *
 * Until it is closed, a listener turns each accepted TCP connection into either
 * `onSecureConnection(socket, peer)` or `onRefused(error, remote)` — never both, never neither — and
 * keeps serving others. Each connection gets its own node:tls server object, so every event and every
 * refusal is tied to the connection it belongs to (a shared one reports errors of sockets whose
 * address is already gone):
 *
 * ```
 *  accept ─► deadline (handshakeTimeoutMs, from accept to hand-off: no byte-dripping client lives longer)
 *         ─► TLS handshake ─► client certificate: CA (OpenSSL), peerNames (here)
 *         ─► tls mode: send 0x01 (accepted) or 0x02 (name refused), read the client's 0x01
 *         ─► onSecureConnection
 * ```
 *
 * In TLS 1.3 a client finishes its handshake before the listener has seen its certificate, so a client
 * that the listener refuses would only see a closed connection later. In `tls` mode both ends therefore
 * send one acceptance byte after their own checks, `0x01`, and `connect()` resolves only once the
 * listener's byte arrived (one round trip more per connection); a listener that refuses a name sends
 * `0x02` instead. In `psk` mode every check happens inside the handshake and no byte is exchanged.
 *
 * All refusals are `RwanError`s with code `RWAN_ERR_TLS` and `details.reason` (one of
 * {@link RefusalReasons}); failures to listen or to reach the peer are `RWAN_ERR_CONNECT` with the
 * system error code and the address in `details`. Every socket gets TCP_NODELAY and keep-alive.
 */
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import {
  isIP,
  connect as netConnect,
  createServer as netCreateServer,
  type Server,
  type Socket,
} from 'node:net';
import type { Duplex } from 'node:stream';
import {
  createSecureContext,
  type PeerCertificate,
  type SecureContext,
  type TLSSocket,
  Server as TlsServer,
  connect as tlsConnect,
} from 'node:tls';
import { setTcpCongestion, setTcpRtoMin } from '../codec/hot-loops.js';
import { isRwanError, RwanError } from '../errors.js';
import { socketFd } from './channel.js';

/** How a connection is secured. Paths are PEM files. */
export type Security = TlsSecurity | PskSecurity | InsecureSecurity;

/** Mutual TLS 1.3 with certificates from one CA. */
export interface TlsSecurity {
  kind: 'tls';
  /** The CA certificate(s) peers must be signed by. */
  ca: string;
  /** This host's certificate (optionally followed by intermediates). */
  cert: string;
  /** This host's private key (unencrypted PEM). */
  key: string;
  /**
   * Accepted peer identities (CN, DNS or IP SAN, exact match, DNS case-insensitive). When given, a peer
   * whose certificate names none of them is refused; when absent, any certificate of the CA is accepted.
   */
  peerNames?: string[];
}

/** TLS 1.3 with a pre-shared key. */
export interface PskSecurity {
  kind: 'psk';
  /** Identity sent by the client and looked up by the listener (1 to 128 bytes of UTF-8). */
  identity: string;
  /** The shared secret, {@link MIN_PSK_BYTES} to {@link MAX_PSK_BYTES} bytes of random data. */
  key: Uint8Array;
}

/** Plain TCP. Only for a user who asked for it explicitly. */
export interface InsecureSecurity {
  kind: 'insecure';
}

/** Who is on the other end of a secured connection. */
export interface PeerInfo {
  remoteAddress: string;
  remotePort: number;
  /** How the peer proved who it is. */
  authenticated: 'certificate' | 'psk' | 'none';
  /** The peer's name: the matching `peerNames` entry, else its certificate's CN; the PSK identity. */
  peerName?: string;
  /** Negotiated protocol, e.g. `TLSv1.3`. */
  protocol?: string;
  /** Negotiated cipher suite, e.g. `TLS_AES_256_GCM_SHA384`. */
  cipher?: string;
}

/** A connected socket, after the handshake and any acceptance bytes. */
export type TransportSocket = Socket;

/** Why a connection was refused (`RwanError.details.reason` of an `RWAN_ERR_TLS`). */
export const RefusalReasons = [
  /** The peer's certificate is not signed by the configured CA. */
  'unknown-ca',
  /** The peer's certificate has expired. */
  'expired',
  /** The peer's certificate is not valid yet. */
  'not-yet-valid',
  /** The peer's certificate may not be used for this end of TLS (extended key usage). */
  'bad-purpose',
  /** The peer's certificate failed another check. */
  'certificate',
  /** The peer's certificate names none of `peerNames`. */
  'peer-name',
  /** The client sent no certificate. */
  'no-certificate',
  /** The other end refused this end (its certificate, name or key). */
  'refused-by-peer',
  /** The handshake (and acceptance bytes) did not finish in time. */
  'handshake-timeout',
  /** The other end does not speak TLS (plaintext bytes). */
  'plaintext',
  /** PSK: the client's key does not match the listener's for its identity. */
  'psk-mismatch',
  /** PSK: the listener does not know the client's identity. */
  'psk-unknown-identity',
  /** PSK: the other end did not use a pre-shared key (it offered or sent certificates). */
  'no-psk',
  /** No TLS version or cipher suite in common. */
  'protocol',
  /** The other end closed the connection during the handshake. */
  'closed',
  /** Any other TLS failure. */
  'tls',
] as const;
/** One of {@link RefusalReasons}. */
export type RefusalReason = (typeof RefusalReasons)[number];

/** Default time from accept (or connect) to a usable connection, ms. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
/** Default time for `connect()`: TCP, handshake and acceptance, ms. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** Idle time before the first TCP keep-alive probe, ms. */
export const KEEPALIVE_INITIAL_DELAY_MS = 15_000;
/** Shortest pre-shared key accepted, bytes. */
export const MIN_PSK_BYTES = 16;
/** Longest pre-shared key accepted, bytes (OpenSSL 1.1.1 takes at most 256). */
export const MAX_PSK_BYTES = 256;
/** Longest PSK identity accepted, bytes of UTF-8. */
export const MAX_PSK_IDENTITY_BYTES = 128;
/**
 * TLS 1.3 cipher suites of `psk` mode. A key given through OpenSSL's PSK callbacks (the only PSK
 * interface of node:tls) is bound to SHA-256, so the SHA-384 suite cannot be used with it.
 */
export const PSK_CIPHERS = 'TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256';

/** Acceptance byte of `tls` mode: this end accepts the other. */
const ACCEPTED = 0x01;
/** Listener's byte of `tls` mode: the client's certificate names none of `peerNames`. */
const REFUSED_NAME = 0x02;
/** How long a refused client gets to read the refusal byte before the socket is destroyed, ms. */
const REFUSAL_LINGER_MS = 2_000;

/** Security whose files were read and checked by {@link loadSecurity}. Pass it to `listen`/`connect`. */
export type LoadedSecurity = LoadedTls | LoadedPsk | LoadedInsecure;

/** `tls` mode, loaded. */
export interface LoadedTls {
  kind: 'tls';
  loaded: true;
  /** The files it came from. */
  paths: { ca: string; cert: string; key: string };
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
  /** Accepted peer names, or null for any certificate of the CA. */
  peerNames: readonly string[] | null;
  /** This host's name: its certificate's CN (else first SAN). */
  name: string;
  /** Every name this host's certificate carries (CN, DNS and IP SANs). */
  names: readonly string[];
  /** End of this host's certificate's validity. */
  notAfter: Date;
  /** Context for outgoing connections. */
  context: SecureContext;
}

/** `psk` mode, checked. */
export interface LoadedPsk {
  kind: 'psk';
  loaded: true;
  identity: string;
  /** A private copy of the key. */
  key: Buffer;
}

/** `insecure` mode. */
export interface LoadedInsecure {
  kind: 'insecure';
  loaded: true;
}

function tlsError(
  reason: RefusalReason,
  message: string,
  details: Record<string, unknown> = {},
  cause?: unknown,
): RwanError {
  return new RwanError('RWAN_ERR_TLS', message, {
    details: { reason, ...details },
    ...(cause === undefined ? {} : { cause }),
  });
}

// ───────────────────────────── certificates and names ─────────────────────────────

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;
const OID_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const OID_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const OID_ANY_EKU = '2.5.29.37.0';

/** Canonical text of an IP address (`0:0::1` → `::1`), or undefined for a non-address. */
function canonicalIp(text: string): string | undefined {
  const bare = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  const family = isIP(bare);
  if (family === 4) return bare;
  if (family === 6) return new URL(`http://[${bare}]/`).hostname.slice(1, -1);
  return undefined;
}

/** Comparable form of a name: a canonical IP address, else lower case without a trailing dot. */
function nameKey(name: string): string {
  return canonicalIp(name) ?? name.toLowerCase().replace(/\.$/, '');
}

/** Values of one entry type in a `subjectaltname` string (`DNS:a, IP Address:1.2.3.4`). */
function altNames(san: string | undefined): { dns: string[]; ips: string[] } {
  const dns: string[] = [];
  const ips: string[] = [];
  if (!san) return { dns, ips };
  const entry = /(DNS|IP Address):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/g;
  for (let m = entry.exec(san); m !== null; m = entry.exec(san)) {
    const raw = m[2] ?? '';
    const value = raw.startsWith('"') ? String(JSON.parse(raw)) : raw;
    if (m[1] === 'DNS') dns.push(value);
    else ips.push(canonicalIp(value) ?? value);
  }
  return { dns, ips };
}

/** The CN(s) of a subject given as `CN=a\nO=b` text. */
function commonNamesOfText(subject: string): string[] {
  return subject
    .split('\n')
    .filter((line) => line.startsWith('CN='))
    .map((line) => line.slice(3));
}

/** Names a peer certificate carries: CN first, then DNS and IP SANs. */
function namesOfPeer(cert: PeerCertificate): string[] {
  const cn = cert.subject?.CN as string | string[] | undefined;
  const cns = cn === undefined ? [] : Array.isArray(cn) ? cn : [cn];
  const { dns, ips } = altNames(cert.subjectaltname);
  return [...new Set([...cns, ...dns, ...ips])];
}

/** Names an X509Certificate carries: CN first, then DNS and IP SANs. */
function namesOfX509(cert: X509Certificate): string[] {
  const { dns, ips } = altNames(cert.subjectAltName);
  return [...new Set([...commonNamesOfText(cert.subject), ...dns, ...ips])];
}

/** The entry of `accepted` that one of `names` matches, or undefined. */
function matchName(names: readonly string[], accepted: readonly string[]): string | undefined {
  const have = new Set(names.map(nameKey));
  return accepted.find((a) => have.has(nameKey(a)));
}

function peerNameError(names: readonly string[], accepted: readonly string[], prefix: string): RwanError {
  const shown = names.length > 0 ? `'${names[0]}'` : '(none)';
  return tlsError(
    'peer-name',
    `${prefix}: peer name ${shown} not in peerNames [${accepted.join(', ')}] (the certificate names ${
      names.length > 0 ? names.join(', ') : 'nothing'
    })`,
    { peerNames: [...accepted], certificateNames: [...names] },
  );
}

/** True when `cert` was issued and signed by `issuer`. */
function signedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

/** True when `leaf` chains to one of `cas`, possibly through `intermediates`. */
function chainsTo(leaf: X509Certificate, intermediates: X509Certificate[], cas: X509Certificate[]): boolean {
  let current = leaf;
  const used = new Set<X509Certificate>();
  for (let depth = 0; depth < 8; depth++) {
    if (cas.some((ca) => signedBy(current, ca))) return true;
    const next = intermediates.find((i) => !used.has(i) && i !== current && signedBy(current, i));
    if (!next) return false;
    used.add(next);
    current = next;
  }
  return false;
}

// ───────────────────────────── loading ─────────────────────────────

const FILE_WHAT = { ca: 'CA certificate', cert: 'certificate', key: 'private key' } as const;

async function readPem(path: string, what: keyof typeof FILE_WHAT): Promise<Buffer> {
  if (typeof path !== 'string' || path === '') {
    throw new RwanError('RWAN_ERR_USAGE', `no ${FILE_WHAT[what]} file given`, { details: { what } });
  }
  try {
    return await readFile(path);
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : String(code ?? cause);
    throw tlsError(
      'certificate',
      `cannot read the ${FILE_WHAT[what]} ${path}: ${why}`,
      { path, what, code },
      cause,
    );
  }
}

function parseCerts(pem: Buffer, path: string, what: 'ca' | 'cert'): X509Certificate[] {
  const blocks = pem.toString('latin1').match(PEM_CERT) ?? [];
  if (blocks.length === 0) {
    throw tlsError('certificate', `the ${FILE_WHAT[what]} ${path} holds no PEM certificate`, { path, what });
  }
  return blocks.map((block, i) => {
    try {
      return new X509Certificate(block);
    } catch (cause) {
      throw tlsError(
        'certificate',
        `the ${FILE_WHAT[what]} ${path} is not valid (certificate ${i + 1}: ${(cause as Error).message})`,
        { path, what },
        cause,
      );
    }
  });
}

function checkPeerNames(peerNames: unknown): string[] | null {
  if (peerNames === undefined) return null;
  if (
    !Array.isArray(peerNames) ||
    peerNames.length === 0 ||
    !peerNames.every((n) => typeof n === 'string' && n !== '' && !/\s/.test(n))
  ) {
    throw new RwanError(
      'RWAN_ERR_INVALID_VALUE',
      `peerNames: cannot use ${JSON.stringify(peerNames)}: expected a non-empty list of names (CN, DNS name or IP address)`,
      { details: { value: peerNames } },
    );
  }
  return [...peerNames];
}

async function loadTls(sec: TlsSecurity): Promise<LoadedTls> {
  const peerNames = checkPeerNames(sec.peerNames);
  const [ca, cert, key] = await Promise.all([
    readPem(sec.ca, 'ca'),
    readPem(sec.cert, 'cert'),
    readPem(sec.key, 'key'),
  ]);
  const cas = parseCerts(ca, sec.ca, 'ca');
  for (const c of cas) {
    if (!c.ca) {
      throw tlsError(
        'certificate',
        `the CA file ${sec.ca} holds a certificate that is not a CA (${c.subject})`,
        {
          path: sec.ca,
          what: 'ca',
        },
      );
    }
  }
  const [leaf, ...intermediates] = parseCerts(cert, sec.cert, 'cert');
  if (!leaf) throw new RwanError('RWAN_ERR_INTERNAL', 'parseCerts returned no certificate');
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch (cause) {
    const encrypted = (cause as NodeJS.ErrnoException).code === 'ERR_MISSING_PASSPHRASE';
    throw tlsError(
      'certificate',
      encrypted
        ? `the private key ${sec.key} is encrypted: give an unencrypted key (file mode 0600)`
        : `the private key ${sec.key} is not a valid PEM private key (${(cause as Error).message})`,
      { path: sec.key, what: 'key' },
      cause,
    );
  }
  if (!leaf.checkPrivateKey(privateKey)) {
    throw tlsError('certificate', `the private key ${sec.key} does not match the certificate ${sec.cert}`, {
      path: sec.key,
      what: 'key',
      cert: sec.cert,
    });
  }
  if (!chainsTo(leaf, intermediates, cas)) {
    throw tlsError('unknown-ca', `the certificate ${sec.cert} is not signed by the CA in ${sec.ca}`, {
      path: sec.cert,
      what: 'cert',
      ca: sec.ca,
    });
  }
  const now = Date.now();
  const notBefore = new Date(leaf.validFrom);
  const notAfter = new Date(leaf.validTo);
  if (now < notBefore.getTime()) {
    throw tlsError('not-yet-valid', `the certificate ${sec.cert} is not valid before ${leaf.validFrom}`, {
      path: sec.cert,
      what: 'cert',
    });
  }
  if (now > notAfter.getTime()) {
    throw tlsError('expired', `the certificate ${sec.cert} expired on ${leaf.validTo}`, {
      path: sec.cert,
      what: 'cert',
    });
  }
  const eku = leaf.keyUsage;
  if (
    eku !== undefined &&
    !eku.includes(OID_ANY_EKU) &&
    !(eku.includes(OID_SERVER_AUTH) && eku.includes(OID_CLIENT_AUTH))
  ) {
    throw tlsError(
      'bad-purpose',
      `the certificate ${sec.cert} must allow both TLS server and client authentication ` +
        '(extended key usage serverAuth and clientAuth): the same certificate serves both ends',
      { path: sec.cert, what: 'cert', extendedKeyUsage: eku },
    );
  }
  let context: SecureContext;
  try {
    context = createSecureContext({ ca, cert, key, minVersion: 'TLSv1.3' });
  } catch (cause) {
    throw tlsError(
      'certificate',
      `cannot use ${sec.cert} / ${sec.key} for TLS: ${(cause as Error).message}`,
      { path: sec.cert, what: 'cert' },
      cause,
    );
  }
  const names = namesOfX509(leaf);
  return {
    kind: 'tls',
    loaded: true,
    paths: { ca: sec.ca, cert: sec.cert, key: sec.key },
    ca,
    cert,
    key,
    peerNames,
    name: names[0] ?? '',
    names,
    notAfter,
    context,
  };
}

function loadPsk(sec: PskSecurity): LoadedPsk {
  const idBytes = typeof sec.identity === 'string' ? Buffer.byteLength(sec.identity, 'utf8') : 0;
  if (idBytes === 0 || idBytes > MAX_PSK_IDENTITY_BYTES || sec.identity.includes('\0')) {
    throw new RwanError(
      'RWAN_ERR_INVALID_VALUE',
      `PSK identity: cannot use ${JSON.stringify(sec.identity)}: expected 1 to ${MAX_PSK_IDENTITY_BYTES} bytes of text`,
      { details: { value: sec.identity } },
    );
  }
  if (!(sec.key instanceof Uint8Array) || sec.key.length < MIN_PSK_BYTES || sec.key.length > MAX_PSK_BYTES) {
    const length = sec.key instanceof Uint8Array ? sec.key.length : undefined;
    throw new RwanError(
      'RWAN_ERR_INVALID_VALUE',
      `PSK key: cannot use a key of ${length ?? 'no'} bytes: expected ${MIN_PSK_BYTES} to ${MAX_PSK_BYTES} bytes (32 random bytes recommended)`,
      { details: { length } },
    );
  }
  return { kind: 'psk', loaded: true, identity: sec.identity, key: Buffer.from(sec.key) };
}

function isLoaded(sec: Security | LoadedSecurity): sec is LoadedSecurity {
  return 'loaded' in sec && sec.loaded === true;
}

/**
 * Read and check everything a mode needs, once, so that a daemon fails at start-up rather than at its
 * first connection. `tls`: the three files exist and are PEM, the key matches the certificate, the
 * certificate is signed by the CA (directly or through intermediates in the certificate file), is
 * valid now and allows both server and client authentication. `psk`: identity and key lengths.
 *
 * Throws `RWAN_ERR_TLS` naming the file for a missing, unreadable or invalid file, and
 * `RWAN_ERR_INVALID_VALUE` for bad `peerNames` or PSK values.
 */
export async function loadSecurity(sec: Security | LoadedSecurity): Promise<LoadedSecurity> {
  if (isLoaded(sec)) return sec;
  switch (sec.kind) {
    case 'tls':
      return loadTls(sec);
    case 'psk':
      return loadPsk(sec);
    case 'insecure':
      return { kind: 'insecure', loaded: true };
    default:
      throw new RwanError(
        'RWAN_ERR_USAGE',
        `unknown security mode ${JSON.stringify((sec as { kind?: unknown }).kind)}: expected tls, psk or insecure`,
        { details: { kind: (sec as { kind?: unknown }).kind } },
      );
  }
}

// ───────────────────────────── error mapping ─────────────────────────────

const NOT_SIGNED_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'CERT_CHAIN_TOO_LONG',
  'INVALID_CA',
]);

const PLAINTEXT_CODES = new Set([
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'ERR_SSL_HTTP_REQUEST',
  'ERR_SSL_HTTPS_PROXY_REQUEST',
  'ERR_SSL_PACKET_LENGTH_TOO_LONG',
  'ERR_SSL_UNKNOWN_PROTOCOL',
  'ERR_SSL_RECORD_LENGTH_MISMATCH',
  'ERR_SSL_RECORD_LAYER_FAILURE',
]);

const PROTOCOL_CODES = new Set([
  'ERR_SSL_UNSUPPORTED_PROTOCOL',
  'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION',
  'ERR_SSL_NO_PROTOCOLS_AVAILABLE',
  'ERR_SSL_NO_SHARED_CIPHER',
  'ERR_SSL_NO_CIPHERS_AVAILABLE',
]);

/** Alerts by which the other end says it refused this end's certificate or key. */
const REFUSED_ALERTS = new Set([
  'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA',
  'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN',
  'ERR_SSL_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_REVOKED',
  'ERR_SSL_TLSV1_ALERT_ACCESS_DENIED',
  'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED',
  'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE',
  'ERR_SSL_SSLV3_ALERT_ILLEGAL_PARAMETER',
  'ERR_SSL_TLSV1_ALERT_DECRYPT_ERROR',
  'ERR_SSL_TLSV1_ALERT_UNKNOWN_PSK_IDENTITY',
]);

/** The words of an OpenSSL error without its file, line and function (`alert handshake failure`). */
function opensslWords(err: Error): string {
  const message = String(err.message ?? err).trim();
  const alert = /(?:sslv3|tlsv1|tlsv13) (alert [a-z ]+)/i.exec(message);
  if (alert?.[1]) return alert[1];
  const routine = /SSL routines:[^:]*:([^:]+)/.exec(message);
  return routine?.[1] ?? message;
}

const CLOSED_CODES = new Set(['ECONNRESET', 'EPIPE', 'ERR_SOCKET_CLOSED', 'ERR_STREAM_PREMATURE_CLOSE']);

/** The reason and words for a certificate verification code from OpenSSL. */
function verifyFailure(code: string): { reason: RefusalReason; text: string } {
  if (NOT_SIGNED_CODES.has(code))
    return { reason: 'unknown-ca', text: 'certificate not signed by the configured CA' };
  if (code === 'CERT_HAS_EXPIRED') return { reason: 'expired', text: 'certificate has expired' };
  if (code === 'CERT_NOT_YET_VALID') return { reason: 'not-yet-valid', text: 'certificate is not valid yet' };
  if (code === 'INVALID_PURPOSE') {
    return {
      reason: 'bad-purpose',
      text: 'certificate not allowed for this end of TLS (extended key usage)',
    };
  }
  return { reason: 'certificate', text: `certificate refused (${code})` };
}

/** A handshake failure seen by the listener, as our error. */
function serverFailure(
  err: unknown,
  mode: 'tls' | 'psk',
  where: string,
  state: {
    authorizationError: string | null;
    pskIdentity: string | undefined;
    pskKnown: boolean;
    timeoutMs: number;
  },
): RwanError {
  if (isRwanError(err)) return err;
  const e = err as NodeJS.ErrnoException;
  const code = e.code ?? '';
  const details = { remote: where, code };
  if (state.authorizationError) {
    const f = verifyFailure(state.authorizationError);
    return tlsError(
      f.reason,
      `connection from ${where}: ${f.text}`,
      { ...details, code: state.authorizationError },
      err,
    );
  }
  if (code === 'ERR_TLS_HANDSHAKE_TIMEOUT') {
    return tlsError(
      'handshake-timeout',
      `connection from ${where}: handshake timed out after ${state.timeoutMs} ms`,
      { ...details, timeoutMs: state.timeoutMs },
      err,
    );
  }
  if (PLAINTEXT_CODES.has(code)) {
    return tlsError(
      'plaintext',
      `connection from ${where}: not a TLS client (plaintext bytes)`,
      details,
      err,
    );
  }
  if (
    mode === 'tls' &&
    (code === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE' || /did not return a certificate/.test(e.message))
  ) {
    return tlsError('no-certificate', `connection from ${where}: peer sent no certificate`, details, err);
  }
  if (mode === 'psk') {
    if (state.pskIdentity !== undefined && !state.pskKnown) {
      return tlsError(
        'psk-unknown-identity',
        `connection from ${where}: unknown PSK identity '${state.pskIdentity}'`,
        { ...details, identity: state.pskIdentity },
        err,
      );
    }
    if (code === 'ERR_SSL_BINDER_DOES_NOT_VERIFY' || code === 'ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC') {
      return tlsError(
        'psk-mismatch',
        `connection from ${where}: pre-shared key does not match (identity '${state.pskIdentity ?? '?'}')`,
        { ...details, identity: state.pskIdentity },
        err,
      );
    }
    if (state.pskIdentity === undefined && !CLOSED_CODES.has(code)) {
      return tlsError(
        'no-psk',
        `connection from ${where}: the client offered no pre-shared key (is it set up for certificates?)`,
        details,
        err,
      );
    }
  }
  if (PROTOCOL_CODES.has(code)) {
    return tlsError(
      'protocol',
      `connection from ${where}: no TLS version or cipher suite in common (TLS 1.3 is required)`,
      details,
      err,
    );
  }
  if (REFUSED_ALERTS.has(code)) {
    return tlsError(
      'refused-by-peer',
      `connection from ${where}: the client refused this listener (${opensslWords(e)})`,
      details,
      err,
    );
  }
  if (CLOSED_CODES.has(code)) {
    return tlsError(
      'closed',
      `connection from ${where}: the client closed the connection during the handshake (it may have refused this listener's certificate)`,
      details,
      err,
    );
  }
  return tlsError('tls', `connection from ${where}: TLS handshake failed: ${opensslWords(e)}`, details, err);
}

const CONNECT_WORDS: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ETIMEDOUT: 'timed out',
  EADDRNOTAVAIL: 'address not available',
  EADDRINUSE: 'address in use',
  EACCES: 'permission denied',
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'host name lookup failed (temporary)',
  ECONNRESET: 'connection reset',
};

function connectError(
  what: string,
  where: string,
  err: unknown,
  extra: Record<string, unknown> = {},
): RwanError {
  const e = err as NodeJS.ErrnoException;
  const code = e.code ?? 'ERROR';
  return new RwanError(
    'RWAN_ERR_CONNECT',
    `cannot ${what} ${where}: ${CONNECT_WORDS[code] ?? e.message} (${code})`,
    {
      cause: err,
      details: { code, address: where, ...extra },
    },
  );
}

/** A connection failure seen by the client, as our error. */
function clientFailure(
  err: unknown,
  mode: 'tls' | 'psk' | 'insecure',
  where: string,
  tcpConnected: boolean,
): RwanError {
  if (isRwanError(err)) return err;
  const e = err as NodeJS.ErrnoException;
  const code = e.code ?? '';
  if (!tcpConnected) return connectError('connect to', where, err);
  const details = { remote: where, code };
  if (mode === 'insecure') return connectError('talk to', where, err);
  if (NOT_SIGNED_CODES.has(code) || code.startsWith('CERT_') || code === 'INVALID_PURPOSE') {
    if (mode === 'psk') {
      return tlsError(
        'no-psk',
        `connection to ${where}: the listener answered with a certificate instead of the pre-shared key (is it set up for certificates?)`,
        details,
        err,
      );
    }
    const f = verifyFailure(code);
    return tlsError(f.reason, `connection to ${where}: the listener's ${f.text}`, details, err);
  }
  if (PLAINTEXT_CODES.has(code)) {
    return tlsError(
      'plaintext',
      `connection to ${where}: the listener does not speak TLS (plaintext bytes)`,
      details,
      err,
    );
  }
  if (PROTOCOL_CODES.has(code)) {
    return tlsError(
      'protocol',
      `connection to ${where}: no TLS version or cipher suite in common (TLS 1.3 is required)`,
      details,
      err,
    );
  }
  if (code === 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED') {
    return tlsError(
      'refused-by-peer',
      `connection to ${where}: the listener requires a client certificate`,
      details,
      err,
    );
  }
  if (REFUSED_ALERTS.has(code)) {
    return tlsError(
      'refused-by-peer',
      mode === 'psk'
        ? `connection to ${where}: the listener refused the pre-shared key (wrong identity or key, or it is set up for certificates)`
        : `connection to ${where}: the listener refused this host's certificate (${opensslWords(e)}; or it is set up for a pre-shared key)`,
      details,
      err,
    );
  }
  if (CLOSED_CODES.has(code)) {
    return tlsError(
      'closed',
      `connection to ${where}: the listener closed the connection during the handshake (is it set up for another mode?)`,
      details,
      err,
    );
  }
  return tlsError('tls', `connection to ${where}: TLS handshake failed: ${opensslWords(e)}`, details, err);
}

// ───────────────────────────── sockets ─────────────────────────────

function formatAddress(address: string | undefined, port: number | undefined): string {
  const a = address ?? '?';
  return `${a.includes(':') ? `[${a}]` : a}:${port ?? '?'}`;
}

/** TCP tuning of every connection this process makes or accepts: see {@link configureTcp}. */
const tcp: {
  rtoMinUs: number | null;
  congestion: string | null;
  onError?: ((message: string) => void) | undefined;
} = { rtoMinUs: null, congestion: null };
/** The settings whose failure `onError` has heard about. */
const told = new Set<string>();

/**
 * The TCP tuning of every connection this process makes or accepts from now on:
 * - `rtoMinUs`: the lower bound on the retransmission timeout (Linux 6.15+ TCP_RTO_MIN_US; null: the
 *   kernel's, 200 ms). On a WAN the kernel's bound, not the round trip, sets how long a segment lost at
 *   the tail of an epoch's burst waits (the tail-loss probe of a lone segment in flight waits for it
 *   too).
 * - `congestion`: the congestion control (TCP_CONGESTION; null: the system's default).
 * `onError` hears, once per setting, why it could not be set (no addon, an older kernel, a congestion
 * control this kernel does not have).
 */
export function configureTcp(o: {
  rtoMinUs: number | null;
  congestion?: string | null;
  onError?: (message: string) => void;
}): void {
  tcp.rtoMinUs = o.rtoMinUs;
  tcp.congestion = o.congestion ?? null;
  tcp.onError = o.onError;
  told.clear();
}

function tune(socket: Socket): void {
  socket.setNoDelay(true);
  socket.setKeepAlive(true, KEEPALIVE_INITIAL_DELAY_MS);
  if (tcp.rtoMinUs === null && tcp.congestion === null) return;
  const fd = socketFd(socket);
  const apply = (what: string, set: ((fd: number) => number) | undefined) => {
    const r =
      set === undefined
        ? 'the native addon is not loaded'
        : fd === undefined
          ? 'no socket descriptor'
          : set(fd);
    if (r === 0 || told.has(what) || !tcp.onError) return;
    told.add(what);
    tcp.onError(`cannot set ${what}: ${typeof r === 'number' ? `errno ${-r}` : r}`);
  };
  const { rtoMinUs, congestion } = tcp;
  if (rtoMinUs !== null) {
    const set = setTcpRtoMin;
    apply("the TCP retransmission timeout's lower bound", set && ((f) => set(f, rtoMinUs)));
  }
  if (congestion !== null) {
    const set = setTcpCongestion;
    apply(`the TCP congestion control ${congestion}`, set && ((f) => set(f, congestion)));
  }
}

/**
 * Wait for one byte. Leaves everything after it buffered in the socket, and the socket able to flow
 * again for whoever reads it next. Resolves with the byte, null at the end of the stream, or an error.
 */
function readOneByte(socket: Duplex): Promise<number | null | Error> {
  return new Promise((resolveByte) => {
    const cleanup = () => {
      socket.off('readable', onReadable);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.off('error', onError);
    };
    const onReadable = () => {
      const b = socket.read(1) as Buffer | null;
      if (b !== null && b.length === 1) {
        cleanup();
        resolveByte(b[0] ?? null);
      }
    };
    const onEnd = () => {
      cleanup();
      resolveByte(null);
    };
    const onError = (err: Error) => {
      cleanup();
      resolveByte(err);
    };
    socket.on('readable', onReadable);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.once('error', onError);
  });
}

function peerOf(socket: Socket, authenticated: PeerInfo['authenticated'], peerName?: string): PeerInfo {
  const tlsSocket = socket as Partial<TLSSocket>;
  const protocol = typeof tlsSocket.getProtocol === 'function' ? tlsSocket.getProtocol() : null;
  const cipher = typeof tlsSocket.getCipher === 'function' ? tlsSocket.getCipher() : undefined;
  return {
    remoteAddress: socket.remoteAddress ?? '',
    remotePort: socket.remotePort ?? 0,
    authenticated,
    ...(peerName === undefined ? {} : { peerName }),
    ...(protocol ? { protocol } : {}),
    ...(cipher ? { cipher: cipher.standardName ?? cipher.name } : {}),
  };
}

// ───────────────────────────── listener ─────────────────────────────

/** Where and how to listen. */
export interface ListenOptions {
  /** Address to bind (`0.0.0.0`, `::`, a host's address). */
  host: string;
  /** Port (0: any free port, see the returned `port`). */
  port: number;
  /** From accept to hand-off, ms (default {@link DEFAULT_HANDSHAKE_TIMEOUT_MS}). */
  handshakeTimeoutMs?: number;
}

/** A running listener. */
export interface Listener {
  /** The bound port. */
  port: number;
  /**
   * Stop accepting and drop connections still in their handshake. Connections already handed to
   * `onSecureConnection` belong to the caller and stay open.
   */
  close(): Promise<void>;
}

function checkTimeout(ms: number | undefined, fallback: number, what: string): number {
  const value = ms ?? fallback;
  if (!Number.isFinite(value) || value <= 0) {
    throw new RwanError(
      'RWAN_ERR_INVALID_VALUE',
      `${what}: cannot use ${value}: expected a positive number of ms`,
      {
        details: { value, what },
      },
    );
  }
  return value;
}

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new RwanError('RWAN_ERR_INVALID_VALUE', `port: cannot use ${port}: expected 0 to 65535`, {
      details: { value: port },
    });
  }
}

/**
 * Listen for peers. Each accepted connection ends in exactly one of `onSecureConnection(socket, peer)`
 * (secured, checked, acceptance bytes exchanged) or `onRefused(error, remote)` (an `RWAN_ERR_TLS` with
 * `details.reason`, or `RWAN_ERR_CONNECT` for an accept failure); the listener keeps serving others.
 * A connection not handed off within `handshakeTimeoutMs` of being accepted is dropped, however
 * slowly it keeps sending. Attach an `'error'` listener to a handed-off socket at once.
 *
 * Rejects with `RWAN_ERR_CONNECT` (address in use, not available, permission) when it cannot listen,
 * and with the errors of {@link loadSecurity}.
 */
export async function listen(
  sec: Security | LoadedSecurity,
  options: ListenOptions,
  onSecureConnection: (socket: TransportSocket, peer: PeerInfo) => void,
  onRefused?: (err: RwanError, remote: string) => void,
): Promise<Listener> {
  const loaded = await loadSecurity(sec);
  const timeoutMs = checkTimeout(
    options.handshakeTimeoutMs,
    DEFAULT_HANDSHAKE_TIMEOUT_MS,
    'handshakeTimeoutMs',
  );
  checkPort(options.port);
  const pending = new Set<Socket>();
  let closing = false;
  const refused = (err: RwanError, remote: string) => {
    if (!closing) onRefused?.(err, remote);
  };

  const accept = (raw: Socket) => {
    tune(raw);
    const where = formatAddress(raw.remoteAddress, raw.remotePort);
    if (loaded.kind === 'insecure') {
      onSecureConnection(raw, peerOf(raw, 'none'));
      return;
    }
    pending.add(raw);
    let settled = false;
    let secured: TLSSocket | undefined;
    const state = {
      authorizationError: null as string | null,
      pskIdentity: undefined as string | undefined,
      pskKnown: false,
      timeoutMs,
    };
    const settle = () => {
      settled = true;
      clearTimeout(deadline);
      pending.delete(raw);
    };
    const refuse = (err: RwanError) => {
      if (settled) return;
      settle();
      secured?.destroy();
      raw.destroy();
      refused(err, where);
    };
    const handOff = (socket: TLSSocket, peer: PeerInfo) => {
      if (settled) return;
      settle();
      onSecureConnection(socket, peer);
    };
    const deadline = setTimeout(() => {
      refuse(
        tlsError('handshake-timeout', `connection from ${where}: handshake timed out after ${timeoutMs} ms`, {
          remote: where,
          timeoutMs,
        }),
      );
    }, timeoutMs);
    // Nothing else reported a connection that is gone: say so rather than wait for the deadline.
    raw.once('close', () => {
      setImmediate(() =>
        refuse(
          tlsError(
            'closed',
            `connection from ${where}: the client closed the connection during the handshake`,
            {
              remote: where,
            },
          ),
        ),
      );
    });

    const server =
      loaded.kind === 'tls'
        ? new TlsServer({
            ca: loaded.ca,
            cert: loaded.cert,
            key: loaded.key,
            requestCert: true,
            rejectUnauthorized: true,
            minVersion: 'TLSv1.3',
            handshakeTimeout: timeoutMs,
          })
        : new TlsServer({
            minVersion: 'TLSv1.3',
            maxVersion: 'TLSv1.3',
            ciphers: PSK_CIPHERS,
            handshakeTimeout: timeoutMs,
            pskCallback: (_socket, identity) => {
              state.pskIdentity = identity;
              state.pskKnown = identity === loaded.identity;
              return state.pskKnown ? loaded.key : null;
            },
          });
    server.on('tlsClientError', (err, socket) => {
      secured = socket;
      state.authorizationError = socket.authorizationError ? String(socket.authorizationError) : null;
      refuse(serverFailure(err, loaded.kind, where, state));
    });
    server.on('secureConnection', (socket: TLSSocket) => {
      secured = socket;
      if (settled) {
        socket.destroy();
        return;
      }
      if (loaded.kind === 'psk') {
        handOff(socket, peerOf(socket, 'psk', state.pskIdentity));
        return;
      }
      void confirmClient(socket, loaded, where, {
        accept: (peerName) => handOff(socket, peerOf(socket, 'certificate', peerName)),
        refuse,
        refuseName: (err) => {
          if (settled) return;
          settle();
          // Tell the client why, then let it go.
          socket.end(Buffer.from([REFUSED_NAME]));
          setTimeout(() => socket.destroy(), REFUSAL_LINGER_MS).unref();
          refused(err, where);
        },
      });
    });
    server.emit('connection', raw);
  };

  const netServer: Server = netCreateServer({ noDelay: true, keepAlive: true }, accept);
  await new Promise<void>((resolveListen, reject) => {
    const onError = (err: Error) => {
      reject(
        connectError('listen on', formatAddress(options.host, options.port), err, {
          host: options.host,
          port: options.port,
        }),
      );
    };
    netServer.once('error', onError);
    netServer.listen(options.port, options.host, () => {
      netServer.off('error', onError);
      resolveListen();
    });
  });
  netServer.on('error', (err) => {
    refused(connectError('accept a connection on', formatAddress(options.host, options.port), err), '');
  });
  const address = netServer.address();
  const port = typeof address === 'object' && address !== null ? address.port : options.port;
  return {
    port,
    close: async () => {
      closing = true; // handshakes cut short by close() are not refusals
      netServer.close();
      for (const raw of pending) raw.destroy();
      pending.clear();
      await new Promise((r) => setImmediate(r));
    },
  };
}

/** Listener side of `tls` mode after the handshake: peerNames, then the acceptance bytes. */
async function confirmClient(
  socket: TLSSocket,
  loaded: LoadedTls,
  where: string,
  outcome: {
    accept: (peerName: string) => void;
    refuse: (err: RwanError) => void;
    refuseName: (err: RwanError) => void;
  },
): Promise<void> {
  // node:tls already destroyed unauthorised clients (rejectUnauthorized); checked again all the same.
  const cert = socket.getPeerCertificate();
  if (!socket.authorized || !cert || Object.keys(cert).length === 0) {
    const f = socket.authorizationError
      ? verifyFailure(String(socket.authorizationError))
      : { reason: 'no-certificate' as const, text: 'peer sent no certificate' };
    outcome.refuse(tlsError(f.reason, `connection from ${where}: ${f.text}`, { remote: where }));
    return;
  }
  const names = namesOfPeer(cert);
  let peerName = names[0] ?? '';
  if (loaded.peerNames) {
    const matched = matchName(names, loaded.peerNames);
    if (matched === undefined) {
      outcome.refuseName(peerNameError(names, loaded.peerNames, `connection from ${where}`));
      return;
    }
    peerName = matched;
  }
  socket.write(Buffer.from([ACCEPTED]));
  const answer = await readOneByte(socket);
  if (answer === ACCEPTED) {
    outcome.accept(peerName);
  } else if (typeof answer === 'number') {
    outcome.refuse(
      tlsError(
        'tls',
        `connection from ${where}: not a remus-wan client: it sent 0x${answer.toString(16).padStart(2, '0')} where the acceptance byte was due`,
        { remote: where, byte: answer },
      ),
    );
  } else {
    outcome.refuse(
      tlsError(
        'closed',
        `connection from ${where}: the client closed the connection before accepting the session (it may have refused this listener's certificate)`,
        { remote: where },
      ),
    );
  }
}

// ───────────────────────────── client ─────────────────────────────

/** Where and how to connect. */
export interface ConnectOptions {
  host: string;
  port: number;
  /** TCP connect, handshake and acceptance together, ms (default {@link DEFAULT_CONNECT_TIMEOUT_MS}). */
  timeoutMs?: number;
  /**
   * TLS server name (SNI) to send. In `tls` mode without `peerNames`, the listener's certificate must
   * then also name it.
   */
  servername?: string;
}

/**
 * Connect to a listener and secure the connection. Resolves once the socket is usable: in `tls` mode
 * after the listener's certificate passed the CA and `peerNames` checks and the listener accepted this
 * host; in `psk` mode after a handshake with the pre-shared key.
 *
 * Rejects with `RWAN_ERR_CONNECT` (refused, unreachable, name not found, timed out before TCP
 * connected) or `RWAN_ERR_TLS` with `details.reason` (the listener refused, or was refused).
 */
export async function connect(
  sec: Security | LoadedSecurity,
  options: ConnectOptions,
): Promise<{ socket: TransportSocket; peer: PeerInfo }> {
  const loaded = await loadSecurity(sec);
  const timeoutMs = checkTimeout(options.timeoutMs, DEFAULT_CONNECT_TIMEOUT_MS, 'timeoutMs');
  checkPort(options.port);
  if (options.servername !== undefined && (options.servername === '' || isIP(options.servername) !== 0)) {
    throw new RwanError(
      'RWAN_ERR_INVALID_VALUE',
      `servername: cannot use ${JSON.stringify(options.servername)}: expected a DNS name (TLS sends no IP address as server name)`,
      { details: { value: options.servername } },
    );
  }
  const where = formatAddress(options.host, options.port);

  return new Promise((resolveConnect, reject) => {
    let done = false;
    let tcpConnected = false;
    let peerName: string | undefined;
    const swallow = () => {};
    const fail = (err: RwanError) => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      socket.on('error', swallow); // late errors of a dropped socket
      socket.destroy();
      reject(err);
    };
    const succeed = (peer: PeerInfo) => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      watch(false);
      resolveConnect({ socket, peer });
    };
    const deadline = setTimeout(() => {
      fail(
        tcpConnected && loaded.kind !== 'insecure'
          ? tlsError(
              'handshake-timeout',
              `connection to ${where}: handshake timed out after ${timeoutMs} ms`,
              {
                remote: where,
                timeoutMs,
              },
            )
          : connectError('connect to', where, Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' }), {
              timeoutMs,
            }),
      );
    }, timeoutMs);
    const onError = (err: Error) => fail(clientFailure(err, loaded.kind, where, tcpConnected));
    const onClose = () =>
      fail(
        tcpConnected
          ? clientFailure(
              Object.assign(new Error('socket closed'), { code: 'ECONNRESET' }),
              loaded.kind,
              where,
              true,
            )
          : connectError('connect to', where, Object.assign(new Error('closed'), { code: 'ECONNRESET' })),
      );
    /** Route the socket's errors and its close to `fail` (or stop doing so). */
    const watch = (on: boolean) => {
      if (on) {
        socket.on('error', onError);
        socket.once('close', onClose);
      } else {
        socket.off('error', onError);
        socket.off('close', onClose);
      }
    };

    const socket: Socket =
      loaded.kind === 'insecure'
        ? netConnect({ host: options.host, port: options.port })
        : loaded.kind === 'psk'
          ? tlsConnect({
              host: options.host,
              port: options.port,
              ...(options.servername === undefined ? {} : { servername: options.servername }),
              minVersion: 'TLSv1.3',
              maxVersion: 'TLSv1.3',
              ciphers: PSK_CIPHERS,
              pskCallback: () => ({ identity: loaded.identity, psk: loaded.key }),
              // A listener that answers with a certificate did not take the key: refuse it even if a
              // public CA signed that certificate.
              checkServerIdentity: (_host, cert) =>
                cert && Object.keys(cert).length > 0
                  ? tlsError(
                      'no-psk',
                      `connection to ${where}: the listener answered with a certificate instead of the pre-shared key (is it set up for certificates?)`,
                      { remote: where },
                    )
                  : undefined,
            })
          : tlsConnect({
              host: options.host,
              port: options.port,
              ...(options.servername === undefined ? {} : { servername: options.servername }),
              secureContext: loaded.context,
              minVersion: 'TLSv1.3',
              rejectUnauthorized: true,
              checkServerIdentity: (_host, cert) => {
                const names = namesOfPeer(cert);
                const expected =
                  loaded.peerNames ?? (options.servername === undefined ? null : [options.servername]);
                if (expected === null) {
                  peerName = names[0];
                  return undefined;
                }
                peerName = matchName(names, expected);
                return peerName === undefined
                  ? peerNameError(names, expected, `connection to ${where}`)
                  : undefined;
              },
            });
    socket.once('connect', () => {
      tcpConnected = true;
      tune(socket);
      if (loaded.kind === 'insecure') succeed(peerOf(socket, 'none'));
    });
    watch(true);
    if (loaded.kind === 'psk') {
      socket.once('secureConnect', () => {
        const cert = (socket as TLSSocket).getPeerCertificate();
        if (cert && Object.keys(cert).length > 0) {
          // checkServerIdentity already refuses this; a resumed session would skip it.
          fail(
            tlsError(
              'no-psk',
              `connection to ${where}: the listener answered with a certificate instead of the pre-shared key`,
              { remote: where },
            ),
          );
          return;
        }
        succeed(peerOf(socket, 'psk', loaded.identity));
      });
    } else if (loaded.kind === 'tls') {
      socket.once('secureConnect', () => {
        socket.write(Buffer.from([ACCEPTED]));
        watch(false); // readOneByte reports the end, the close and errors until the listener answers
        void readOneByte(socket).then((answer) => {
          if (answer === ACCEPTED) {
            succeed(peerOf(socket, 'certificate', peerName));
          } else if (answer === REFUSED_NAME) {
            fail(
              tlsError(
                'refused-by-peer',
                `connection to ${where}: the listener refused this host's certificate: its names (${loaded.names.join(', ')}) are not in the listener's peerNames`,
                { remote: where, peerReason: 'peer-name' },
              ),
            );
          } else if (typeof answer === 'number') {
            fail(
              tlsError(
                'tls',
                `connection to ${where}: not a remus-wan listener: it sent 0x${answer.toString(16).padStart(2, '0')} where the acceptance byte was due`,
                { remote: where, byte: answer },
              ),
            );
          } else if (
            answer instanceof Error &&
            !CLOSED_CODES.has((answer as NodeJS.ErrnoException).code ?? '')
          ) {
            fail(clientFailure(answer, 'tls', where, true));
          } else {
            fail(
              tlsError(
                'refused-by-peer',
                `connection to ${where}: the listener closed the connection after the handshake: it refused this host's certificate ` +
                  '(not signed by its CA, expired, or not allowed for a client)',
                { remote: where },
              ),
            );
          }
        });
      });
    }
  });
}
