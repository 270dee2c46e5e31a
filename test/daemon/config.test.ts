import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { merge, parseAddress, receiveSettings, sendSettings } from '../../src/daemon/config.js';
import { parseConfig } from '../../src/daemon/config-file.js';
import { codeOf } from '../helpers.js';

const example = (name: string) => parseConfig(readFileSync(`examples/${name}`, 'utf8'), name);

describe('daemon config', () => {
  it('the bundled examples are valid and give the documented settings', () => {
    const s = sendSettings(merge(example('send.json'), {}));
    expect(s).toMatchObject({
      connect: { host: 'backup.example.net', port: 7800 },
      security: { kind: 'tls', peerNames: ['backup'] },
      epochMs: 100,
      window: 4,
      channels: 2,
      cacheBytes: 64 * 2 ** 20,
      rate: { bytesPerSecond: 12_500_000, burstBytes: 4 * 2 ** 20 },
      pausePid: 4242,
    });
    const r = receiveSettings(merge(example('receive.json'), {}));
    expect(r).toMatchObject({
      listen: { host: '0.0.0.0', port: 7800 },
      deadTimeMs: 3000,
      onPrimaryLost: '/usr/local/sbin/remus-promote',
      checkpointBytes: 256 * 2 ** 20,
    });
    expect(receiveSettings(merge(example('receive.json'), { checkpoint: '1MiB' })).checkpointBytes).toBe(
      2 ** 20,
    );
  });

  it('flags win over the file; defaults fill the rest', () => {
    const s = sendSettings(merge(example('send.json'), { window: '1', epoch: '20ms', rate: 'off' }));
    expect(s.window).toBe(1);
    expect(s.epochMs).toBe(20);
    expect(s.rate).toBeNull();
    const d = sendSettings({ connect: 'b:1', image: 'x', insecure: true });
    expect(d).toMatchObject({
      window: 4,
      channels: 2,
      epochMs: 100,
      zstdLevel: 1,
      pageSize: 4096,
      heartbeatMs: 200,
    });
  });

  it('--tcp-rto-min: 20 ms by default, off, or a duration from 1 ms to 1 s, in µs', () => {
    const base = { connect: 'b:1', image: 'x', insecure: true };
    expect(sendSettings(base).tcpRtoMinUs).toBe(20_000);
    expect(sendSettings({ ...base, tcpRtoMin: '20ms' }).tcpRtoMinUs).toBe(20_000);
    expect(receiveSettings({ store: 'd', insecure: true, tcpRtoMin: '1s' }).tcpRtoMinUs).toBe(1_000_000);
    expect(sendSettings({ ...base, tcpRtoMin: 'off' }).tcpRtoMinUs).toBeNull();
    for (const bad of ['0.5ms', '2s']) {
      expect(codeOf(() => sendSettings({ ...base, tcpRtoMin: bad }))).toBe('RWAN_ERR_INVALID_VALUE');
    }
    expect(codeOf(() => sendSettings({ ...base, tcpRtoMin: 'soon' }))).toBe('RWAN_ERR_INVALID_UNIT');
  });

  it('--tcp-congestion: the system default, or a name; --copies-below: a size or off', () => {
    const base = { connect: 'b:1', image: 'x', insecure: true };
    expect(sendSettings(base).tcpCongestion).toBeNull();
    expect(receiveSettings({ store: 'd', insecure: true, tcpCongestion: 'bbr' }).tcpCongestion).toBe('bbr');
    expect(sendSettings({ ...base, tcpCongestion: 'system' }).tcpCongestion).toBeNull();
    for (const bad of ['', 'a b', 'x'.repeat(16)]) {
      expect(codeOf(() => sendSettings({ ...base, tcpCongestion: bad }))).toBe('RWAN_ERR_INVALID_VALUE');
    }
    expect(sendSettings(base).copiesBelowBytes).toBe(256 * 1024);
    expect(sendSettings({ ...base, copiesBelow: '1MiB' }).copiesBelowBytes).toBe(2 ** 20);
    expect(sendSettings(base).hedgeAfterMs).toBe(10);
    expect(sendSettings({ ...base, hedgeAfter: '25ms' }).hedgeAfterMs).toBe(25);
    expect(sendSettings({ ...base, hedgeAfter: 'off' }).hedgeAfterMs).toBe(0);
    expect(sendSettings({ ...base, copiesBelow: 'off' }).copiesBelowBytes).toBe(0);
    expect(codeOf(() => sendSettings({ ...base, copiesBelow: 'lots' }))).toMatch(/^RWAN_ERR_INVALID/);
  });

  it('refuses what cannot work, with stable codes', () => {
    expect(codeOf(() => parseConfig('{', 'f'))).toBe('RWAN_ERR_INVALID_INPUT');
    expect(codeOf(() => parseConfig('{"windw": 2}', 'f'))).toBe('RWAN_ERR_INVALID_INPUT'); // a typo is not ignored
    expect(codeOf(() => sendSettings({ connect: 'b:1', image: 'x' }))).toBe('RWAN_ERR_USAGE'); // no security chosen
    expect(codeOf(() => sendSettings({ connect: 'b:1', image: 'x', insecure: true, tlsCa: 'a' }))).toBe(
      'RWAN_ERR_USAGE',
    );
    expect(codeOf(() => sendSettings({ connect: 'b:1', image: 'x', tlsCa: 'a', tlsCert: 'b' }))).toBe(
      'RWAN_ERR_USAGE',
    );
    expect(codeOf(() => sendSettings({ image: 'x', insecure: true }))).toBe('RWAN_ERR_USAGE'); // no --connect
    expect(codeOf(() => receiveSettings({ insecure: true }))).toBe('RWAN_ERR_USAGE'); // no --store
    expect(codeOf(() => sendSettings({ connect: 'b:1', image: 'x', insecure: true, epoch: '100' }))).toBe(
      'RWAN_ERR_INVALID_UNIT',
    );
    expect(codeOf(() => parseAddress('host:99999', '--connect', 'h'))).toBe('RWAN_ERR_INVALID_VALUE');
  });

  it('addresses: host:port, [v6]:port, a port alone, a host alone', () => {
    expect(parseAddress('10.0.0.2:7801', 'x', 'h')).toEqual({ host: '10.0.0.2', port: 7801 });
    expect(parseAddress('[::1]:7801', 'x', 'h')).toEqual({ host: '::1', port: 7801 });
    expect(parseAddress('7801', 'x', 'h')).toEqual({ host: 'h', port: 7801 });
    expect(parseAddress('backup', 'x', 'h')).toEqual({ host: 'backup', port: 7800 });
  });
});

describe('the remus-wan command', () => {
  it('starts through its first line, `#!/usr/bin/env -S node FLAGS`, as the kernel runs it', () => {
    const wan = new URL('../../dist/src/cli/wan.js', import.meta.url).pathname;
    const first = readFileSync(wan, 'utf8').split('\n')[0] as string;
    expect(first).toMatch(/^#!\/usr\/bin\/env -S node( --[a-z-]+=\d+)*$/);
    // the kernel hands env everything after the interpreter as one argument, then the script
    const run = spawnSync('/usr/bin/env', [first.slice('#!/usr/bin/env '.length), wan, 'help'], {
      encoding: 'utf8',
    });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(run.stdout).toContain('remus-wan');
    const version = spawnSync(process.execPath, [wan, '--version'], { encoding: 'utf8' });
    expect(version.status).toBe(0);
    expect(version.stdout.trim()).toBe(
      (
        JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
          version: string;
        }
      ).version,
    );
  });
});
