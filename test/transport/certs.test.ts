/**
 * makeCertificates and `remus-wan certs` with the real openssl command: the files, their modes, what
 * the certificates say, `openssl verify`, refusing to overwrite, adding a host to an existing CA.
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseHostSpec, registerCerts } from '../../src/cli/wan-certs.js';
import { type MadeCertificates, makeCertificates } from '../../src/transport/certs.js';
import { codeOf, codeOfAsync } from '../helpers.js';

function openssl(...args: string[]): Promise<{ ok: boolean; out: string }> {
  return new Promise((resolve) => {
    execFile('openssl', args, (err, stdout, stderr) => resolve({ ok: !err, out: `${stdout}${stderr}` }));
  });
}

let dir: string;
let made: MadeCertificates;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'remus-wan-certs-'));
  made = await makeCertificates({
    outDir: join(dir, 'pki'),
    caName: 'pair CA',
    hosts: [
      { name: 'primary', dns: ['primary.example.net'], ips: ['192.0.2.10'] },
      { name: 'backup', ips: ['198.51.100.20', '2001:db8::20'] },
    ],
    days: 30,
  });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('makeCertificates', () => {
  it('writes the CA and each host, keys with mode 0600, and nothing else', async () => {
    const pki = join(dir, 'pki');
    expect((await readdir(pki)).sort()).toEqual(
      ['backup.key', 'backup.pem', 'ca.key', 'ca.pem', 'primary.key', 'primary.pem'].sort(),
    );
    for (const key of [made.ca.key, ...made.hosts.map((h) => h.key)]) {
      expect((await stat(key)).mode & 0o777).toBe(0o600);
    }
    expect(made.ca).toEqual({ cert: join(pki, 'ca.pem'), key: join(pki, 'ca.key'), reused: false });
    expect(made.hosts.map((h) => h.cert)).toEqual([join(pki, 'primary.pem'), join(pki, 'backup.pem')]);
  });

  it('makes certificates openssl verifies against the CA', async () => {
    for (const h of made.hosts) {
      const r = await openssl('verify', '-CAfile', made.ca.cert, h.cert);
      expect(r.out).toContain(': OK');
      expect(r.ok).toBe(true);
    }
    // …and not against another CA.
    const other = await makeCertificates({ outDir: join(dir, 'other'), hosts: [{ name: 'x' }] });
    expect((await openssl('verify', '-CAfile', other.ca.cert, made.hosts[0]?.cert ?? '')).ok).toBe(false);
  });

  it('puts the names, both key usages and a P-256 key in each host certificate', async () => {
    const ca = new X509Certificate(await readFile(made.ca.cert));
    expect(ca.ca).toBe(true);
    expect(ca.subject).toBe('CN=pair CA');
    const primary = new X509Certificate(await readFile(made.hosts[0]?.cert ?? ''));
    expect(primary.ca).toBe(false);
    expect(primary.subject).toBe('CN=primary');
    expect(primary.subjectAltName).toBe('DNS:primary, DNS:primary.example.net, IP Address:192.0.2.10');
    expect(primary.keyUsage?.sort()).toEqual(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    expect(primary.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(primary.checkIssued(ca) && primary.verify(ca.publicKey)).toBe(true);
    const days = (new Date(primary.validTo).getTime() - new Date(primary.validFrom).getTime()) / 86_400_000;
    expect(days).toBeCloseTo(30, 0);
    const backup = new X509Certificate(await readFile(made.hosts[1]?.cert ?? ''));
    expect(backup.subjectAltName).toMatch(/^DNS:backup, IP Address:198\.51\.100\.20, IP Address:2001:DB8:/i);
  });

  it('refuses to overwrite host files unless forced', async () => {
    const outDir = join(dir, 'pki');
    const before = await readFile(made.hosts[0]?.cert ?? '');
    const err = await codeOfAsync(makeCertificates({ outDir, hosts: [{ name: 'primary' }] }));
    expect(err).toBe('RWAN_ERR_USAGE');
    expect((await readFile(made.hosts[0]?.cert ?? '')).equals(before)).toBe(true);
    expect((await readdir(outDir)).filter((f) => f.startsWith('.'))).toEqual([]); // no staging left
  });

  it('signs a new host with the existing CA, and makes a new CA only when forced', async () => {
    const outDir = join(dir, 'grow');
    const first = await makeCertificates({ outDir, hosts: [{ name: 'a' }], keyType: 'ed25519' });
    const caBefore = await readFile(first.ca.cert);
    const second = await makeCertificates({ outDir, hosts: [{ name: 'b', ips: ['10.0.0.2'] }] });
    expect(second.ca.reused).toBe(true);
    expect((await readFile(first.ca.cert)).equals(caBefore)).toBe(true);
    expect((await openssl('verify', '-CAfile', first.ca.cert, second.hosts[0]?.cert ?? '')).ok).toBe(true);

    const forced = await makeCertificates({ outDir, hosts: [{ name: 'a' }], force: true });
    expect(forced.ca.reused).toBe(false);
    expect((await readFile(first.ca.cert)).equals(caBefore)).toBe(false);
    // b.pem was signed by the replaced CA.
    expect((await openssl('verify', '-CAfile', forced.ca.cert, second.hosts[0]?.cert ?? '')).ok).toBe(false);
  });

  it('refuses a CA certificate without its key', async () => {
    const outDir = join(dir, 'half');
    const r = await makeCertificates({ outDir, hosts: [{ name: 'a' }] });
    await rm(r.ca.key);
    expect(await codeOfAsync(makeCertificates({ outDir, hosts: [{ name: 'b' }] }))).toBe('RWAN_ERR_USAGE');
  });

  it('checks names, addresses, lifetime and the CA name before running openssl', async () => {
    const outDir = join(dir, 'bad');
    const bad = (o: Partial<Parameters<typeof makeCertificates>[0]>) =>
      codeOfAsync(makeCertificates({ outDir, hosts: [{ name: 'a' }], ...o }));
    expect(await bad({ hosts: [] })).toBe('RWAN_ERR_USAGE');
    expect(await bad({ hosts: [{ name: '../etc/passwd' }] })).toBe('RWAN_ERR_INVALID_VALUE');
    expect(await bad({ hosts: [{ name: 'ca' }] })).toBe('RWAN_ERR_INVALID_VALUE');
    expect(await bad({ hosts: [{ name: 'a' }, { name: 'A' }] })).toBe('RWAN_ERR_USAGE');
    expect(await bad({ hosts: [{ name: 'a', ips: ['300.1.1.1'] }] })).toBe('RWAN_ERR_INVALID_VALUE');
    expect(await bad({ hosts: [{ name: 'a', dns: ['bad name'] }] })).toBe('RWAN_ERR_INVALID_VALUE');
    expect(await bad({ days: 0 })).toBe('RWAN_ERR_INVALID_VALUE');
    expect(await bad({ caName: '/CN=evil' })).toBe('RWAN_ERR_INVALID_VALUE');
  });

  it('says so when openssl is missing', async () => {
    const outDir = join(dir, 'no-openssl');
    const p = makeCertificates({ outDir, hosts: [{ name: 'a' }], openssl: join(dir, 'no-such-openssl') });
    await expect(p).rejects.toMatchObject({
      code: 'RWAN_ERR_TLS',
      message: expect.stringMatching(/openssl/),
    });
    expect(await readdir(outDir)).toEqual([]);
  });
});

describe('remus-wan certs', () => {
  async function run(...argv: string[]): Promise<{ out: string; err: string; error?: unknown }> {
    let out = '';
    let err = '';
    const io = { out: (t: string) => (out += t), err: (t: string) => (err += t) };
    const program = new Command('remus-wan')
      .exitOverride()
      .configureOutput({ writeOut: io.out, writeErr: io.err });
    registerCerts(program, io);
    try {
      await program.parseAsync(argv, { from: 'user' });
      return { out, err };
    } catch (error) {
      return { out, err, error };
    }
  }

  it('writes the files and prints them, or JSON', async () => {
    const outDir = join(dir, 'cli');
    const r = await run(
      'certs',
      '--out',
      outDir,
      '--host',
      'primary,192.0.2.10',
      '--host',
      'backup,backup.example.net',
    );
    expect(r.error).toBeUndefined();
    expect(r.out).toContain(`wrote ${join(outDir, 'ca.pem')}`);
    expect(r.out).toContain(`wrote ${join(outDir, 'backup.key')}`);
    const backup = new X509Certificate(await readFile(join(outDir, 'backup.pem')));
    expect(backup.subjectAltName).toBe('DNS:backup, DNS:backup.example.net');

    const j = await run('certs', '--out', outDir, '--host', 'third,::1', '--json', '--days', '10');
    const made = JSON.parse(j.out) as MadeCertificates;
    expect(made.ca.reused).toBe(true);
    expect(made.days).toBe(10);
    expect(made.hosts[0]).toMatchObject({ name: 'third', ips: ['::1'], dns: [] });
  });

  it('refuses to overwrite without --force and overwrites with it', async () => {
    const outDir = join(dir, 'cli-force');
    expect((await run('certs', '--out', outDir, '--host', 'a')).error).toBeUndefined();
    const again = await run('certs', '--out', outDir, '--host', 'a');
    expect((again.error as { code?: string }).code).toBe('RWAN_ERR_USAGE');
    expect((await run('certs', '--out', outDir, '--host', 'a', '--force')).error).toBeUndefined();
  });

  it('requires --out and --host, and explains itself in --help', async () => {
    const noHost = await run('certs', '--out', join(dir, 'x'));
    expect((noHost.error as { code?: string }).code).toBe('commander.missingMandatoryOptionValue');
    const help = await run('certs', '--help');
    expect(help.out).toMatch(/--host <name\[,dns\|ip\.\.\.\]>/);
    expect(help.out).toMatch(/Examples:\n {2}remus-wan certs --out/);
  });

  it('parses host specs', () => {
    expect(parseHostSpec('b,b.example.net,10.0.0.2,::1')).toEqual({
      name: 'b',
      dns: ['b.example.net'],
      ips: ['10.0.0.2', '::1'],
    });
    expect(parseHostSpec('a')).toEqual({ name: 'a' });
    expect(codeOf(() => parseHostSpec('a,,b'))).toBe('RWAN_ERR_INVALID_VALUE');
    expect(codeOf(() => parseHostSpec(''))).toBe('RWAN_ERR_INVALID_VALUE');
  });
});
