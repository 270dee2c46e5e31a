/**
 * A BGP lab for the failover tests, built by the test: BIRD 2 as the upstream router on 127.0.0.1
 * (a free port, its control socket in a temporary directory, no kernel protocol: nothing reaches the
 * host's routing table) and ExaBGP 4.2 as a site's speaker on 127.0.0.x, its named pipes under
 * /run/exabgp with a pipe name of its own. Only the processes started here are stopped, by PID, and
 * the pipes and the directory are removed.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { closeSync, constants, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePorts } from '../../tools/bench/harness.js';

export interface Speaker {
  /** The speaker's address (its router id, and BGP next hop `self`). */
  address: string;
  pipes: { in: string; out: string };
  child: ChildProcess;
}

export interface BgpLab {
  dir: string;
  /** birdc's output for `args` (e.g. `show route 203.0.113.0/24 all`). */
  birdc(...args: string[]): string;
  /** Whether BIRD has a route for `prefix`, and from which speaker address. */
  routeAt(prefix: string): { present: boolean; from: string | undefined };
  /**
   * Start an ExaBGP speaker at 127.0.0.`n` (AS 65000 + n) peering with BIRD; resolves once Established
   * and its pipes are read. With `process`, ExaBGP also runs that program (argv, no spaces in it) on its
   * process API (encoder json, neighbor changes); ExaBGP passes its stderr on to `<dir>/exabgp<n>.err`.
   */
  speaker(n: number, o?: { process?: string[] }): Promise<Speaker>;
  /** The pipe name of speaker `n` (its pipes are made by the first speaker(n), and kept for restarts). */
  pipeName(n: number): string;
  /** Make the pipes of a pipe name without starting ExaBGP. */
  fifos(name: string): { in: string; out: string };
  stop(): Promise<void>;
}

const RUN = '/run/exabgp';

export async function startBgpLab(): Promise<BgpLab> {
  const dir = mkdtempSync(join(tmpdir(), 'rwan-bgp-lab-'));
  const [port] = (await freePorts(1)) as [number];
  const sock = join(dir, 'bird.ctl');
  const children: ChildProcess[] = [];
  const pipes: string[] = [];
  const tag = `rwan${process.pid}x${Math.floor(Math.random() * 1e6)}`;
  const peers = [2, 3, 4, 5].map(
    (n) => `
protocol bgp site${n} {
  local 127.0.0.1 port ${port} as 65001;
  neighbor 127.0.0.${n} as ${65000 + n};
  multihop 2;
  passive on;
  strict bind on;
  hold time 9;
  ipv4 { import all; export none; };
}`,
  );
  writeFileSync(
    join(dir, 'bird.conf'),
    `log "${join(dir, 'bird.log')}" all;\nrouter id 127.0.0.1;\nprotocol device { scan time 10; }\n${peers.join('\n')}\n`,
  );
  const bird = spawn('bird', ['-f', '-c', join(dir, 'bird.conf'), '-s', sock, '-P', join(dir, 'bird.pid')], {
    stdio: ['ignore', 'ignore', openSync(join(dir, 'bird.err'), 'a')],
  });
  children.push(bird);
  const birdc = (...args: string[]) =>
    execFileSync('birdc', ['-s', sock, ...args], { encoding: 'utf8', timeout: 5000, stdio: 'pipe' });
  for (let i = 0; ; i++) {
    try {
      birdc('show', 'status');
      break;
    } catch (err) {
      if (i > 100) throw new Error(`BIRD did not start: ${(err as Error).message}`);
      await sleep(50);
    }
  }
  mkdirSync(RUN, { recursive: true });

  const lab: BgpLab = {
    dir,
    birdc,
    routeAt(prefix) {
      // birdc exits 1 on "Network not found": its output says so either way
      const r = spawnSync('birdc', ['-s', sock, 'show', 'route', prefix, 'all'], {
        encoding: 'utf8',
        timeout: 5000,
      });
      const out = r.stdout ?? '';
      if (out.includes('Network not found')) return { present: false, from: undefined };
      if (r.status !== 0) throw new Error(`birdc: ${out}${r.stderr ?? ''}`);
      const m = /\[(site\d+)[^\]]*from (127\.0\.0\.\d+)\]/.exec(out);
      return { present: out.includes(prefix.split('/')[0] ?? prefix), from: m?.[2] };
    },
    fifos(name) {
      const p = { in: join(RUN, `${name}.in`), out: join(RUN, `${name}.out`) };
      for (const f of [p.in, p.out]) {
        rmSync(f, { force: true });
        execFileSync('mkfifo', ['-m', '600', f]);
        pipes.push(f);
      }
      return p;
    },
    pipeName: (n) => `${tag}s${n}`,
    async speaker(n, o = {}) {
      const name = lab.pipeName(n);
      const made = { in: join(RUN, `${name}.in`), out: join(RUN, `${name}.out`) };
      const p = pipes.includes(made.in) ? made : lab.fifos(name);
      const conf = join(dir, `exabgp${n}.conf`);
      const proc = o.process ? `process hook {\n  run ${o.process.join(' ')};\n  encoder json;\n}\n` : '';
      writeFileSync(
        conf,
        `${proc}neighbor 127.0.0.1 {${o.process ? '\n  api { processes [ hook ]; neighbor-changes; }' : ''}
  router-id 127.0.0.${n};
  local-address 127.0.0.${n};
  local-as ${65000 + n};
  peer-as 65001;
  connect ${port};
  hold-time 9;
  family { ipv4 unicast; }
}
`,
      );
      const child = spawn('/usr/sbin/exabgp', [conf], {
        env: {
          ...process.env,
          'exabgp.daemon.user': 'root',
          'exabgp.api.pipename': name,
          'exabgp.log.destination': join(dir, `exabgp${n}.log`),
        },
        stdio: [
          'ignore',
          openSync(join(dir, `exabgp${n}.out`), 'a'),
          openSync(join(dir, `exabgp${n}.err`), 'a'),
        ],
      });
      children.push(child);
      for (let i = 0; ; i++) {
        if (/site\d+\s+BGP\s+\S+\s+up\s+\S+\s+Established/.test(birdc('show', 'protocols', `site${n}`)))
          break;
        if (i > 200 || child.exitCode !== null)
          throw new Error(`ExaBGP ${n} did not establish its session (${dir})`);
        await sleep(50);
      }
      // its CLI helper opens the command pipe a little after the session is up
      for (let i = 0; ; i++) {
        try {
          closeSync(openSync(p.in, constants.O_WRONLY | constants.O_NONBLOCK));
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENXIO' || i > 200) throw err;
          await sleep(25);
        }
      }
      return { address: `127.0.0.${n}`, pipes: p, child };
    },
    async stop() {
      for (const c of children.reverse()) {
        if (c.exitCode === null && c.signalCode === null) {
          c.kill('SIGTERM');
          const done = new Promise((r) => c.once('exit', r));
          if ((await Promise.race([done, sleep(3000, 'late')])) === 'late') c.kill('SIGKILL');
        }
      }
      for (const f of pipes) rmSync(f, { force: true });
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return lab;
}

/** Whether BIRD and ExaBGP are installed (tools/system-deps.sh installs them for `npm test`). */
export function haveBgpTools(): boolean {
  try {
    execFileSync('bird', ['--version'], { stdio: 'ignore' });
    execFileSync('/usr/sbin/exabgp', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
