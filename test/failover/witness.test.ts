/**
 * The witness on loopback, with a TCP listener standing for the primary: promotion is granted only
 * while the primary is unreachable and only for the next token; the token survives a restart; two
 * racing backups cannot both win; the status answer and the clients' readings of it.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { askWitness, requestPromotion, Witness, witnessServer } from '../../src/failover/witness.js';

const dir = mkdtempSync(join(tmpdir(), 'rwan-witness-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});

/** A listener standing for the primary; `stop()` makes it unreachable (the port refuses). */
async function fakePrimary(): Promise<{ port: number; stop: () => Promise<void> }> {
  const s: Server = createServer((c) => c.destroy());
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const { port } = s.address() as { port: number };
  let open = true;
  const stop = async () => {
    if (!open) return;
    open = false;
    await new Promise<void>((r) => s.close(() => r()));
  };
  closers.push(stop);
  return { port, stop };
}

async function serve(w: Witness): Promise<string> {
  const server = witnessServer(w);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  closers.push(() => new Promise((r) => server.close(() => r())));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}

let files = 0;
const tokenFile = () => join(dir, `token${files++}`);

describe('Witness', () => {
  it('refuses while it reaches the primary; grants the next token once it cannot; persists it', async () => {
    const primary = await fakePrimary();
    const file = tokenFile();
    const w = await Witness.open({
      primary: { host: '127.0.0.1', port: primary.port },
      tokenFile: file,
      probeTimeoutMs: 300,
    });
    expect(w.token).toBe(0);
    expect(await w.promote({ token: 1, site: 'b' })).toMatchObject({
      granted: false,
      token: 0,
      reason: /partition/,
    });
    await primary.stop();
    expect(await w.promote({ token: 2, site: 'b' })).toMatchObject({
      granted: false,
      reason: /not the next one/,
    });
    expect(await w.promote({ token: 1, site: 'b' })).toMatchObject({ granted: true, token: 1 });
    expect(readFileSync(file, 'utf8')).toBe('1\n');
    expect(await w.promote({ token: 1, site: 'c' })).toMatchObject({ granted: false, token: 1 }); // already spent
    const again = await Witness.open({ primary: { host: '127.0.0.1', port: primary.port }, tokenFile: file });
    expect(again.token).toBe(1);
  });

  it('two backups racing for the same token: one wins', async () => {
    const primary = await fakePrimary();
    await primary.stop();
    const w = await Witness.open({
      primary: { host: '127.0.0.1', port: primary.port },
      tokenFile: tokenFile(),
    });
    const answers = await Promise.all([
      w.promote({ token: 1, site: 'b1' }),
      w.promote({ token: 1, site: 'b2' }),
    ]);
    expect(answers.filter((a) => a.granted)).toHaveLength(1);
    expect(w.token).toBe(1);
  });

  it('refuses malformed requests and a damaged token file', async () => {
    const primary = await fakePrimary();
    await primary.stop();
    const w = await Witness.open({
      primary: { host: '127.0.0.1', port: primary.port },
      tokenFile: tokenFile(),
    });
    for (const req of [
      { token: '1', site: 'b' },
      { token: 1.5, site: 'b' },
      { token: 1, site: 'b\nx' },
      { token: 1, site: '' },
    ]) {
      expect((await w.promote(req)).granted).toBe(false);
    }
    const bad = tokenFile();
    writeFileSync(bad, 'seven\n');
    await expect(
      Witness.open({ primary: { host: '127.0.0.1', port: 1 }, tokenFile: bad }),
    ).rejects.toMatchObject({
      code: 'RWAN_ERR_INVALID_INPUT',
    });
  });
});

describe('the witness over HTTP', () => {
  it('status and promotion, as the controller reads them', async () => {
    const primary = await fakePrimary();
    const w = await Witness.open({
      primary: { host: '127.0.0.1', port: primary.port },
      tokenFile: tokenFile(),
      probeTimeoutMs: 300,
    });
    const url = await serve(w);
    expect(await askWitness(url, 1000)).toEqual({ witnessUp: true, witnessSeesPrimary: true, knownToken: 0 });
    expect(await requestPromotion(url, 1, 'backup', 1000)).toMatchObject({ granted: false, token: 0 });
    await primary.stop();
    expect(await askWitness(url, 1000)).toEqual({
      witnessUp: true,
      witnessSeesPrimary: false,
      knownToken: 0,
    });
    expect(await requestPromotion(url, 1, 'backup', 1000)).toMatchObject({ granted: true, token: 1 });
    expect((await askWitness(url, 1000)).knownToken).toBe(1);
    const r = await fetch(`${url}/v1/promote`, { method: 'POST', body: '{not json' });
    expect(r.status).toBe(400);
    expect((await fetch(`${url}/v1/nothing`)).status).toBe(404);
  });

  it('a witness that does not answer is down, and refuses', async () => {
    const gone = await fakePrimary(); // a port that is then closed: nothing listens
    await gone.stop();
    const url = `http://127.0.0.1:${gone.port}`;
    expect(await askWitness(url, 500)).toEqual({
      witnessUp: false,
      witnessSeesPrimary: null,
      knownToken: null,
    });
    expect(await requestPromotion(url, 3, 'backup', 500)).toMatchObject({ granted: false, token: 2 });
  });
});

describe('remus-failover witness (arguments)', () => {
  it('refuses a missing or malformed address, and a bad timeout', async () => {
    const { main } = await import('../../src/cli/failover.js');
    const run = async (...argv: string[]) => {
      let err = '';
      const code = await main(argv, { out: () => undefined, err: (t) => (err += t) });
      return { code, err };
    };
    expect(await run('witness', '--token-file', tokenFile())).toMatchObject({
      code: 2,
      err: /--primary HOST:PORT/,
    });
    expect(await run('witness', '--primary', 'nope', '--token-file', tokenFile())).toMatchObject({
      code: 2,
      err: /RWAN_ERR_INVALID_VALUE: --primary nope/,
    });
    expect(await run('witness', '--primary', '[::1]:70000', '--token-file', tokenFile())).toMatchObject({
      code: 2,
    });
    expect(
      await run(
        'witness',
        '--primary',
        '127.0.0.1:7800',
        '--token-file',
        tokenFile(),
        '--probe-timeout',
        '0',
      ),
    ).toMatchObject({ code: 2, err: /--probe-timeout/ });
  });
});
