/**
 * `remus-wan certs`: make a private CA and a certificate per host for the `tls` security mode
 * (docs/security.md). A thin shell over {@link makeCertificates}: parse options, make, print the files.
 */
import { isIP } from 'node:net';
import { type Command, Option } from 'commander';
import { RwanError } from '../errors.js';
import {
  DEFAULT_CA_NAME,
  DEFAULT_CERT_DAYS,
  type HostSpec,
  type KeyType,
  KeyTypes,
  type MadeCertificates,
  makeCertificates,
} from '../transport/certs.js';
import { parseCount } from '../units.js';
import { type Io, processIo } from './entry.js';

interface CertsOptions {
  out: string;
  caName: string;
  host: HostSpec[];
  days: number;
  keyType: KeyType;
  force?: boolean;
  json?: boolean;
}

/** `NAME[,DNS|IP...]` → a host: each extra entry is an IP address when it parses as one, else a DNS name. */
export function parseHostSpec(text: string): HostSpec {
  const [name = '', ...extra] = text.split(',').map((part) => part.trim());
  if (name === '' || extra.some((e) => e === '')) {
    throw new RwanError(
      'RWAN_ERR_INVALID_VALUE',
      `--host: cannot use ${JSON.stringify(text)}: expected NAME[,DNS-NAME|IP-ADDRESS...], e.g. backup,backup.example.net,192.0.2.10`,
      { details: { value: text, what: '--host' } },
    );
  }
  const ips = extra.filter((e) => isIP(e) !== 0);
  const dns = extra.filter((e) => isIP(e) === 0);
  return { name, ...(dns.length > 0 ? { dns } : {}), ...(ips.length > 0 ? { ips } : {}) };
}

function renderText(made: MadeCertificates): string {
  const lines = [
    made.ca.reused
      ? `using the existing CA ${made.ca.cert} (key ${made.ca.key})`
      : `wrote ${made.ca.cert}\nwrote ${made.ca.key}  (the CA key: keep it offline; it is only needed to add hosts)`,
  ];
  for (const h of made.hosts) {
    const names = [h.name, ...h.dns, ...h.ips].join(', ');
    lines.push(`wrote ${h.cert}  (${names}; valid ${made.days} days)`, `wrote ${h.key}`);
  }
  lines.push('', 'Copy ca.pem, and each host its own <host>.pem and <host>.key (mode 0600), to that host.');
  return `${lines.join('\n')}\n`;
}

/** Attach `certs` to a commander program (the `remus-wan` CLI). Errors are `RwanError`s, thrown. */
export function registerCerts(program: Command, io: Io = processIo): Command {
  return program
    .command('certs')
    .description(
      'make a private CA and one certificate per host for mutual TLS between the two daemons\n' +
        '(EC P-256 or Ed25519 keys; each certificate serves its host as listener and as client)',
    )
    .requiredOption(
      '--out <dir>',
      'directory for ca.pem, ca.key and <host>.pem / <host>.key (created if missing)',
    )
    .addOption(new Option('--ca-name <name>', 'common name of a new CA').default(DEFAULT_CA_NAME))
    .addOption(
      new Option(
        '--host <name[,dns|ip...]>',
        'a host: its name (CN, file name), then more DNS names and IP addresses it is reached at (repeatable)',
      )
        .argParser((value: string, previous: HostSpec[] = []) => [...previous, parseHostSpec(value)])
        .makeOptionMandatory(),
    )
    .addOption(
      new Option('--days <n>', 'lifetime of the new certificates, days')
        .default(DEFAULT_CERT_DAYS)
        .argParser((v) => parseCount(v, { what: '--days' })),
    )
    .addOption(new Option('--key-type <type>', 'key algorithm').choices(KeyTypes).default('p256'))
    .addOption(new Option('--force', 'replace existing files, including the CA'))
    .addOption(new Option('--json', 'print what was written as JSON'))
    .addHelpText(
      'after',
      `
Examples:
  remus-wan certs --out /etc/remus-wan/pki --host primary,primary.example.net,192.0.2.10 \\
                  --host backup,backup.example.net,198.51.100.20
  remus-wan certs --out /etc/remus-wan/pki --host backup2,203.0.113.5     (adds a host: the existing CA signs it)

Existing files are never overwritten without --force. When ca.pem and ca.key exist, they sign the new
host certificates. Private keys are written with mode 0600. Needs the openssl command
(REMUS_WAN_OPENSSL to use another one).`,
    )
    .action(async (o: CertsOptions) => {
      const made = await makeCertificates({
        outDir: o.out,
        caName: o.caName,
        hosts: o.host,
        days: o.days,
        keyType: o.keyType,
        force: o.force ?? false,
      });
      io.out(o.json ? `${JSON.stringify(made, null, 2)}\n` : renderText(made));
    });
}
