#!/usr/bin/env node
/**
 * The WAN lab: two network namespaces joined by an emulated WAN, for tests, benchmarks and users.
 * This kernel has no netem, so:
 *   delay  a user-space delay line (delayline.c) between a TUN device in each namespace
 *   rate   tbf on each device's egress
 *   loss   nftables, each namespace dropping that share of what comes in on its device
 * Addresses are private to the namespaces: site A is 10.203.0.1, site B 10.203.0.2 (point to point).
 *
 *   node tools/wanlab/wanlab.mjs up --name NAME --rtt 25ms --rate 100mbit --loss 0.1% [--jitter 1ms] [--json]
 *   node tools/wanlab/wanlab.mjs measure --name NAME [--bytes 20MB] [--pings 50] [--json]
 *   node tools/wanlab/wanlab.mjs down --name NAME
 *   node tools/wanlab/wanlab.mjs build                 (the delay line's binary: built if needed, its path)
 *   node tools/wanlab/wanlab.mjs shape --ns NS --dev DEV [--rate 100mbit] [--loss 0.1%]
 *                                                      (rate and loss on one device of another lab)
 *
 * `up` builds the lab, then measures it (ping for the round trip and loss, a TCP bulk transfer for
 * the throughput): what the lab gives, not what was asked. Run commands in it with
 * `ip netns exec wl-NAME-a …` / `wl-NAME-b`. State: /run/wanlab/NAME.json. Needs root, iproute2,
 * nftables (for loss), ping, a C compiler (the delay line is built once into tools/wanlab/build/).
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';

const here = dirname(new URL(import.meta.url).pathname);
const RUN = '/run/wanlab';
const A = '10.203.0.1';
const B = '10.203.0.2';

/** A duration (`25ms`, `0.5s`) in ms; a rate (`100mbit`, `1gbit`) in bit/s; a share (`0.1%`). */
function ms(v, what) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|us)?$/.exec(String(v).trim());
  if (!m) fail(`${what} ${v}: a duration such as 25ms`);
  return Number(m[1]) * ({ us: 0.001, ms: 1, s: 1000 }[m[2] ?? 'ms'] ?? 1);
}
function rate(v) {
  const m = /^(\d+(?:\.\d+)?)(k|m|g)?bit$/i.exec(String(v).trim());
  if (!m) fail(`--rate ${v}: such as 100mbit or 1gbit`);
  return Number(m[1]) * { k: 1e3, m: 1e6, g: 1e9 }[(m[2] ?? '').toLowerCase()] || Number(m[1]);
}
function share(v) {
  const m = /^(\d+(?:\.\d+)?)(%)?$/.exec(String(v).trim());
  const x = m ? Number(m[1]) / (m[2] ? 100 : 1) : Number.NaN;
  if (!(x >= 0 && x < 1)) fail(`--loss ${v}: a share such as 0.1% or 0.001`);
  return x;
}
function size(v) {
  const m = /^(\d+(?:\.\d+)?(?:e\d+)?)\s*(B|kB|KB|KiB|MB|MiB|GB|GiB)?$/.exec(String(v).trim());
  const unit = { B: 1, kB: 1e3, KB: 1e3, KiB: 1024, MB: 1e6, MiB: 2 ** 20, GB: 1e9, GiB: 2 ** 30 }[
    m?.[2] ?? 'B'
  ];
  const n = m ? Math.round(Number(m[1]) * unit) : Number.NaN;
  if (!(n > 0)) fail(`--bytes ${v}: a size such as 20MB`);
  return n;
}
function fail(msg) {
  process.stderr.write(`wanlab: ${msg}\n`);
  process.exit(2);
}
const run = (cmd, args) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const names = (name) => ({ a: `wl-${name}-a`, b: `wl-${name}-b`, state: join(RUN, `${name}.json`) });

/** The delay line's binary, built when missing or older than its source. */
function delayline() {
  const src = join(here, 'delayline.c');
  const bin = join(here, 'build', 'delayline');
  if (!existsSync(bin) || statSync(bin).mtimeMs < statSync(src).mtimeMs) {
    mkdirSync(join(here, 'build'), { recursive: true });
    run('cc', ['-O2', '-Wall', '-o', bin, src]);
  }
  return bin;
}

/**
 * The rate (tbf on the device's egress, bit/s; 0: none) and the loss (nftables dropping that share of
 * what comes in on the device; 0: none) of one end of a link, in namespace `ns`.
 */
function shape(ns, dev, bits, loss) {
  if (bits > 0) {
    // a burst of at least one MTU and 1 ms at the rate; the queue holds the rate's 50 ms
    const burst = Math.max(1600, Math.ceil(bits / 8 / 1000));
    run('tc', [
      '-n',
      ns,
      'qdisc',
      'add',
      'dev',
      dev,
      'root',
      'tbf',
      'rate',
      `${Math.round(bits)}bit`,
      'burst',
      String(burst),
      'latency',
      '50ms',
    ]);
  }
  if (loss > 0) {
    const script = [
      'table inet wanlab {',
      '  chain wanin {',
      '    type filter hook input priority 0; policy accept;',
      `    iifname "${dev}" numgen random mod 1000000 < ${Math.round(loss * 1e6)} drop`,
      '  }',
      '}',
      '',
    ].join('\n');
    execFileSync('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: script });
  }
}

async function up(o) {
  const n = names(o.name);
  if (existsSync(n.state)) fail(`a lab named ${o.name} is up (down it first)`);
  const rttMs = ms(o.rtt ?? '25ms', '--rtt');
  const jitterMs = o.jitter ? ms(o.jitter, '--jitter') : 0;
  const bits = o.rate ? rate(o.rate) : 0;
  const loss = o.loss ? share(o.loss) : 0;
  const bin = delayline();
  mkdirSync(RUN, { recursive: true });
  const made = [];
  let dl;
  try {
    for (const ns of [n.a, n.b]) {
      run('ip', ['netns', 'add', ns]);
      made.push(ns);
      run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    const log = openSync(join(RUN, `${o.name}.delayline.log`), 'a');
    dl = spawn(bin, [n.a, 'wla', n.b, 'wlb', String(rttMs / 2), String(jitterMs)], {
      stdio: ['ignore', 'pipe', log],
      detached: true,
    });
    await new Promise((resolve, reject) => {
      dl.stdout.once('data', () => resolve());
      dl.once('exit', (code) =>
        reject(new Error(`the delay line exited (${code}): ${join(RUN, `${o.name}.delayline.log`)}`)),
      );
    });
    dl.stdout.destroy();
    dl.unref();
    for (const [ns, dev, me, peer] of [
      [n.a, 'wla', A, B],
      [n.b, 'wlb', B, A],
    ]) {
      run('ip', ['-n', ns, 'addr', 'add', me, 'peer', peer, 'dev', dev]);
      run('ip', ['-n', ns, 'link', 'set', dev, 'mtu', '1500', 'up']);
      shape(ns, dev, bits, loss);
    }
    const state = {
      name: o.name,
      pid: dl.pid,
      namespaces: [n.a, n.b],
      addresses: { a: A, b: B },
      asked: { rttMs, jitterMs, rateBitsPerSecond: bits, loss },
    };
    writeFileSync(n.state, `${JSON.stringify(state)}\n`);
    return state;
  } catch (err) {
    dl?.kill('SIGTERM');
    for (const ns of made) spawnSync('ip', ['netns', 'del', ns]);
    throw err;
  }
}

/** Whether `pid` still runs (a zombie has ended: only its parent's reaping is left). */
function running(pid) {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

async function down(o) {
  const n = names(o.name);
  if (!existsSync(n.state)) fail(`no lab named ${o.name}`);
  const state = JSON.parse(readFileSync(n.state, 'utf8'));
  try {
    process.kill(state.pid, 'SIGTERM');
  } catch {
    // gone already
  }
  for (let i = 0; running(state.pid); i++) {
    if (i === 100) process.kill(state.pid, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 50));
  }
  for (const ns of state.namespaces) spawnSync('ip', ['netns', 'del', ns]);
  rmSync(n.state, { force: true });
  rmSync(join(RUN, `${o.name}.delayline.log`), { force: true });
  return { name: o.name, down: true };
}

/** The round trip and loss (ping), the throughput of one TCP stream A → B (`bytes` of it). */
async function measure(o) {
  const n = names(o.name);
  if (!existsSync(n.state)) fail(`no lab named ${o.name}`);
  const ping = spawnSync(
    'ip',
    ['netns', 'exec', n.a, 'ping', '-q', '-c', String(o.pings ?? 50), '-i', '0.02', B],
    { encoding: 'utf8' },
  );
  const rtt = /= ([\d.]+)\/([\d.]+)\/([\d.]+)\/([\d.]+) ms/.exec(ping.stdout);
  const lost = /([\d.]+)% packet loss/.exec(ping.stdout);
  const bytes = size(o.bytes ?? '20MB');
  const port = 7000 + Math.floor(Math.random() * 1000);
  const sink = spawn(
    'ip',
    [
      'netns',
      'exec',
      n.b,
      process.execPath,
      '-e',
      `
    const s = require('net').createServer((c) => { let n = 0, t0;
      c.on('data', (d) => { t0 ??= process.hrtime.bigint(); n += d.length; });
      c.on('end', () => { console.log(JSON.stringify({ n, ms: Number(process.hrtime.bigint() - t0) / 1e6 })); process.exit(0); }); });
    s.listen(${port}, '${B}', () => console.log('up'));`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const lines = [];
  sink.stdout.on('data', (d) => lines.push(...d.toString().trim().split('\n')));
  while (!lines.includes('up')) await new Promise((r) => setTimeout(r, 20));
  const t0 = process.hrtime.bigint();
  run('ip', [
    'netns',
    'exec',
    n.a,
    process.execPath,
    '-e',
    `
    const c = require('net').connect(${port}, '${B}', () => { const b = Buffer.alloc(1 << 20, 7); let left = ${bytes};
      const more = () => { while (left > 0) { const k = Math.min(left, b.length); left -= k; if (!c.write(b.subarray(0, k))) return c.once('drain', more); } c.end(); };
      more(); });`,
  ]);
  await new Promise((r) => sink.once('exit', r));
  const got = JSON.parse(lines.find((l) => l.startsWith('{')) ?? '{}');
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return {
    name: o.name,
    rttMs: rtt
      ? { min: Number(rtt[1]), avg: Number(rtt[2]), max: Number(rtt[3]), mdev: Number(rtt[4]) }
      : null,
    pingLoss: lost ? Number(lost[1]) / 100 : null,
    throughputMbps: got.n === bytes ? Math.round((8 * bytes) / seconds / 1e4) / 100 : null,
    bytes,
  };
}

const [cmd, ...rest] = process.argv.slice(2);
const { values: o } = parseArgs({
  args: rest,
  options: {
    name: { type: 'string', default: 'lab' },
    rtt: { type: 'string' },
    rate: { type: 'string' },
    loss: { type: 'string' },
    jitter: { type: 'string' },
    bytes: { type: 'string' },
    pings: { type: 'string', default: '50' },
    json: { type: 'boolean', default: false },
    ns: { type: 'string' },
    dev: { type: 'string' },
  },
});
if (process.getuid?.() !== 0 && cmd !== 'build') fail('needs root (network namespaces)');
const say = (x) =>
  process.stdout.write(o.json ? `${JSON.stringify(x)}\n` : `${JSON.stringify(x, null, 2)}\n`);
if (cmd === 'build') process.stdout.write(`${delayline()}\n`);
else if (cmd === 'up') {
  const state = await up(o);
  say({ ...state, measured: await measure(o) });
} else if (cmd === 'measure') say(await measure(o));
else if (cmd === 'shape') {
  if (!o.ns || !o.dev) fail('shape needs --ns and --dev');
  const bits = o.rate ? rate(o.rate) : 0;
  const loss = o.loss ? share(o.loss) : 0;
  shape(o.ns, o.dev, bits, loss);
  say({ ns: o.ns, dev: o.dev, rateBitsPerSecond: bits, loss });
} else if (cmd === 'down') say(await down(o));
else
  fail(
    'usage: wanlab.mjs up|measure|down --name NAME [--rtt 25ms --rate 100mbit --loss 0.1% --jitter 1ms] [--json] | shape --ns NS --dev DEV [--rate R] [--loss L]',
  );
