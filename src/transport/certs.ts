/**
 * A private certificate authority for one replication pair (or a few), made with the `openssl` command.
 *
 *   outDir/ca.pem  ca.key          the CA: self-signed, `CA:TRUE, pathlen:0`, signs certificates only
 *   outDir/<host>.pem <host>.key   one per host: CN=<host>, SAN DNS:<host> plus the given names and
 *                                  addresses, extended key usage serverAuth + clientAuth, so the same
 *                                  certificate serves a daemon as listener and as client
 *
 * Keys are EC P-256 (default) or Ed25519; both are accepted by TLS 1.3 in Node 20. Key files are
 * written with mode 0600. Everything is made in a private staging directory inside `outDir` and
 * renamed into place once every `openssl` step has succeeded, so a failure leaves no half-made set.
 *
 * Existing files are never overwritten unless `force` is set. When `ca.pem` and `ca.key` already exist
 * (and `force` is not set), the existing CA signs the new host certificates: that is how a host is
 * added to a running deployment. `openssl` runs through `execFile` (no shell); user text reaches it
 * only after validation (host names, DNS names, IP addresses, a CA name from a small character set).
 */
import { execFile } from 'node:child_process';
import { createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import { constants } from 'node:fs';
import { access, chmod, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import { RwanError } from '../errors.js';

/** Key algorithms `makeCertificates` can use. */
export const KeyTypes = ['p256', 'ed25519'] as const;
/** A key algorithm: EC on the NIST P-256 curve, or Ed25519. */
export type KeyType = (typeof KeyTypes)[number];

/** Default lifetime of the CA and host certificates, days. */
export const DEFAULT_CERT_DAYS = 825;
/** Default common name of the CA. */
export const DEFAULT_CA_NAME = 'remus-wan CA';

/** A host to make a certificate for. */
export interface HostSpec {
  /** Host name: the certificate's CN, its first DNS SAN, and the file names `<name>.pem` / `<name>.key`. */
  name: string;
  /** More DNS names the host answers to. */
  dns?: string[];
  /** IP addresses (v4 or v6) the host is reached at. */
  ips?: string[];
}

/** Options of {@link makeCertificates}. */
export interface MakeCertificatesOptions {
  /** Directory for the files (created when missing). */
  outDir: string;
  /** Common name of a new CA (default {@link DEFAULT_CA_NAME}); ignored when an existing CA is used. */
  caName?: string;
  /** At least one host. */
  hosts: HostSpec[];
  /** Lifetime of new certificates, days (default {@link DEFAULT_CERT_DAYS}). */
  days?: number;
  /** Replace existing files, including the CA (default false). */
  force?: boolean;
  /** Key algorithm (default `p256`). */
  keyType?: KeyType;
  /** The openssl program (default `$REMUS_WAN_OPENSSL`, else `openssl` from PATH). */
  openssl?: string;
}

/** A certificate and its key, as written. */
export interface CertificateFiles {
  /** PEM certificate. */
  cert: string;
  /** PEM private key (mode 0600). */
  key: string;
}

/** What {@link makeCertificates} wrote (absolute paths). */
export interface MadeCertificates {
  outDir: string;
  ca: CertificateFiles & {
    /** True when an existing CA signed the host certificates (its files were left as they were). */
    reused: boolean;
  };
  hosts: Array<CertificateFiles & { name: string; dns: string[]; ips: string[] }>;
  /** Lifetime of the new certificates, days. */
  days: number;
  /** Key algorithm of the new host keys (an existing CA keeps its own). */
  keyType: KeyType;
}

const HOST_LABEL = '[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
const HOSTNAME = new RegExp(`^${HOST_LABEL}(?:\\.${HOST_LABEL})*$`);
const CA_NAME = /^[\p{L}\p{N}][\p{L}\p{N} ._'()-]{0,63}$/u;
const MAX_DAYS = 36_500;

function usage(message: string, details: Record<string, unknown>): RwanError {
  return new RwanError('RWAN_ERR_USAGE', message, { details });
}

function invalid(message: string, details: Record<string, unknown>): RwanError {
  return new RwanError('RWAN_ERR_INVALID_VALUE', message, { details });
}

function checkHostname(text: string, what: string): string {
  if (text.length > 253 || !HOSTNAME.test(text)) {
    throw invalid(
      `${what}: cannot use ${JSON.stringify(text)}: expected a host name (letters, digits, '-', '.')`,
      {
        value: text,
        what,
      },
    );
  }
  return text;
}

function checkIp(text: string, what: string): string {
  if (isIP(text) === 0) {
    throw invalid(`${what}: cannot use ${JSON.stringify(text)}: expected an IPv4 or IPv6 address`, {
      value: text,
      what,
    });
  }
  return text;
}

/** Validated, normalised hosts (names unique, not `ca`). */
function checkHosts(hosts: readonly HostSpec[]): Array<{ name: string; dns: string[]; ips: string[] }> {
  if (hosts.length === 0) throw usage('no host given: name at least one host to make a certificate for', {});
  const seen = new Set<string>();
  return hosts.map((h) => {
    const name = checkHostname(h.name, 'host name');
    const lower = name.toLowerCase();
    if (lower === 'ca') {
      throw invalid(`host name: cannot use "${name}": ca.pem and ca.key are the CA's files`, { value: name });
    }
    if (seen.has(lower)) throw usage(`host ${name} is given twice`, { host: name });
    seen.add(lower);
    const dns = [...new Set((h.dns ?? []).map((d) => checkHostname(d, `DNS name of ${name}`)))].filter(
      (d) => d.toLowerCase() !== lower,
    );
    const ips = [...new Set((h.ips ?? []).map((ip) => checkIp(ip, `IP address of ${name}`)))];
    return { name, dns, ips };
  });
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path, constants.F_OK);
    return true;
  } catch {
    return false;
  }
}

/** The openssl program to run. */
function opensslProgram(given: string | undefined): string {
  return given ?? process.env.REMUS_WAN_OPENSSL ?? 'openssl';
}

/** Run openssl with `args` in `cwd`; RWAN_ERR_TLS when it is missing or fails. */
function runOpenssl(program: string, args: string[], cwd: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile(program, args, { cwd, timeout: 60_000, maxBuffer: 4 * 2 ** 20 }, (err, stdout, stderr) => {
      if (!err) {
        resolvePromise(stdout);
        return;
      }
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'EACCES') {
        reject(
          new RwanError(
            'RWAN_ERR_TLS',
            `cannot make certificates: the openssl command (${program}) was not found or cannot run; ` +
              'install OpenSSL (Debian/Ubuntu: apt-get install openssl) or set REMUS_WAN_OPENSSL',
            { cause: err, details: { program, code } },
          ),
        );
        return;
      }
      const text = String(stderr).trim().split('\n').slice(-3).join(' | ');
      reject(
        new RwanError('RWAN_ERR_TLS', `cannot make certificates: openssl ${args[0]} failed: ${text}`, {
          cause: err,
          details: { program, args, stderr: String(stderr) },
        }),
      );
    });
  });
}

function keyArgs(keyType: KeyType, out: string): string[] {
  return keyType === 'p256'
    ? ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', out]
    : ['genpkey', '-algorithm', 'ED25519', '-out', out];
}

/** Ed25519 signs without a separate digest; EC signs with SHA-256. */
function digestArgs(keyType: KeyType): string[] {
  return keyType === 'p256' ? ['-sha256'] : [];
}

/** A positive random 128-bit serial number, as openssl takes it. */
function serial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return `0x${bytes.toString('hex')}`;
}

const REQ_CONFIG = `[req]
distinguished_name = dn
prompt = no
utf8 = yes
string_mask = utf8only
x509_extensions = ca_ext
[dn]
[ca_ext]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
`;

function hostExtensions(h: { name: string; dns: string[]; ips: string[] }): string {
  const san = [h.name, ...h.dns].map((d) => `DNS:${d}`).concat(h.ips.map((ip) => `IP:${ip}`));
  return `[host_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = ${san.join(', ')}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
`;
}

/** The digest arguments for signing with an existing CA (checked: a CA, its key matching), or an error. */
async function existingCaDigest(caCert: string, caKey: string): Promise<string[]> {
  let cert: X509Certificate;
  let keyType: string | undefined;
  try {
    cert = new X509Certificate(await readFile(caCert));
    const key = createPrivateKey(await readFile(caKey));
    keyType = key.asymmetricKeyType;
    if (!cert.checkPrivateKey(key)) {
      throw new RwanError('RWAN_ERR_TLS', `the existing CA key ${caKey} does not match ${caCert}`, {
        details: { caCert, caKey },
      });
    }
  } catch (err) {
    if (err instanceof RwanError) throw err;
    throw new RwanError(
      'RWAN_ERR_TLS',
      `cannot use the existing CA in ${caCert} / ${caKey}: ${(err as Error).message} (use --force to make a new CA)`,
      { cause: err, details: { caCert, caKey } },
    );
  }
  if (!cert.ca) {
    throw new RwanError('RWAN_ERR_TLS', `the existing ${caCert} is not a CA certificate`, {
      details: { caCert },
    });
  }
  // EdDSA signs the message itself; EC, RSA and RSA-PSS sign a SHA-256 digest.
  return keyType === 'ed25519' || keyType === 'ed448' ? [] : ['-sha256'];
}

/**
 * Make (or extend) a private CA and one certificate per host with the `openssl` command.
 *
 * Throws `RWAN_ERR_USAGE` when a file to write exists and `force` is not set (or only one of
 * `ca.pem` / `ca.key` exists), `RWAN_ERR_INVALID_VALUE` for a bad host name, address, CA name or
 * lifetime, and `RWAN_ERR_TLS` when openssl is missing or fails, or an existing CA cannot be used.
 */
export async function makeCertificates(o: MakeCertificatesOptions): Promise<MadeCertificates> {
  const hosts = checkHosts(o.hosts);
  const days = o.days ?? DEFAULT_CERT_DAYS;
  if (!Number.isInteger(days) || days < 1 || days > MAX_DAYS) {
    throw invalid(`days: cannot use ${days}: expected a whole number of days, 1 to ${MAX_DAYS}`, {
      value: days,
    });
  }
  const caName = o.caName ?? DEFAULT_CA_NAME;
  if (!CA_NAME.test(caName)) {
    throw invalid(
      `CA name: cannot use ${JSON.stringify(caName)}: expected 1 to 64 letters, digits, spaces or . _ ' ( ) -`,
      { value: caName },
    );
  }
  const force = o.force ?? false;
  const program = opensslProgram(o.openssl);
  const outDir = resolve(o.outDir);
  const caCert = join(outDir, 'ca.pem');
  const caKey = join(outDir, 'ca.key');

  try {
    await mkdir(outDir, { recursive: true });
  } catch (cause) {
    throw new RwanError('RWAN_ERR_IO', `cannot create the directory ${outDir}`, {
      cause,
      details: { path: outDir },
    });
  }

  const hostFiles = hosts.map((h) => ({
    ...h,
    cert: join(outDir, `${h.name}.pem`),
    key: join(outDir, `${h.name}.key`),
  }));
  const caCertExists = await exists(caCert);
  const caKeyExists = await exists(caKey);
  let reuseCa = false;
  if (!force) {
    const taken: string[] = [];
    for (const h of hostFiles) {
      if (await exists(h.cert)) taken.push(h.cert);
      if (await exists(h.key)) taken.push(h.key);
    }
    if (taken.length > 0) {
      throw usage(`refusing to overwrite ${taken.join(', ')} (use --force to replace them)`, {
        files: taken,
      });
    }
    if (caCertExists !== caKeyExists) {
      const present = caCertExists ? caCert : caKey;
      throw usage(
        `${present} exists without its ${caCertExists ? 'key' : 'certificate'}: refusing to overwrite it (use --force to make a new CA)`,
        { files: [present] },
      );
    }
    reuseCa = caCertExists && caKeyExists;
  }
  const keyType: KeyType = o.keyType ?? 'p256';
  const caDigest = reuseCa ? await existingCaDigest(caCert, caKey) : digestArgs(keyType);

  let staging: string;
  try {
    staging = await mkdtemp(join(outDir, '.certs-'));
  } catch (cause) {
    throw new RwanError('RWAN_ERR_IO', `cannot write in ${outDir}`, { cause, details: { path: outDir } });
  }
  try {
    const cnf = join(staging, 'openssl.cnf');
    await writeFile(cnf, REQ_CONFIG, { mode: 0o600 });
    const signCert = reuseCa ? caCert : join(staging, 'ca.pem');
    const signKey = reuseCa ? caKey : join(staging, 'ca.key');
    if (!reuseCa) {
      await runOpenssl(program, keyArgs(keyType, 'ca.key'), staging);
      await runOpenssl(
        program,
        [
          'req',
          '-x509',
          '-new',
          '-config',
          cnf,
          '-key',
          'ca.key',
          '-subj',
          `/CN=${caName}`,
          '-utf8',
          '-days',
          String(days),
          '-set_serial',
          serial(),
          ...digestArgs(keyType),
          '-out',
          'ca.pem',
        ],
        staging,
      );
    }
    for (const h of hostFiles) {
      const ext = join(staging, `${h.name}.ext`);
      await writeFile(ext, hostExtensions(h), { mode: 0o600 });
      await runOpenssl(program, keyArgs(keyType, `${h.name}.key`), staging);
      await runOpenssl(
        program,
        [
          'req',
          '-new',
          '-config',
          cnf,
          '-key',
          `${h.name}.key`,
          '-subj',
          `/CN=${h.name}`,
          '-out',
          `${h.name}.csr`,
        ],
        staging,
      );
      await runOpenssl(
        program,
        [
          'x509',
          '-req',
          '-in',
          `${h.name}.csr`,
          '-CA',
          signCert,
          '-CAkey',
          signKey,
          '-set_serial',
          serial(),
          '-days',
          String(days),
          ...caDigest,
          '-extfile',
          ext,
          '-extensions',
          'host_ext',
          '-out',
          `${h.name}.pem`,
        ],
        staging,
      );
    }
    // Everything made: keys private, then into place (same file system, so each rename is atomic).
    const moves: Array<[string, string, number]> = [];
    if (!reuseCa) {
      moves.push([join(staging, 'ca.key'), caKey, 0o600], [join(staging, 'ca.pem'), caCert, 0o644]);
    }
    for (const h of hostFiles) {
      moves.push(
        [join(staging, `${h.name}.key`), h.key, 0o600],
        [join(staging, `${h.name}.pem`), h.cert, 0o644],
      );
    }
    for (const [from, to, mode] of moves) {
      await chmod(from, mode);
      await rename(from, to);
    }
  } catch (err) {
    if (err instanceof RwanError) throw err;
    throw new RwanError('RWAN_ERR_IO', `cannot write certificates in ${outDir}: ${(err as Error).message}`, {
      cause: err,
      details: { path: outDir },
    });
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
  return {
    outDir,
    ca: { cert: caCert, key: caKey, reused: reuseCa },
    hosts: hostFiles.map((h) => ({ name: h.name, dns: h.dns, ips: h.ips, cert: h.cert, key: h.key })),
    days,
    keyType,
  };
}
