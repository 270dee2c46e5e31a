/**
 * A two-site BGP lab in network namespaces, built by the test and removed after it (nothing is added
 * to the host's own namespace: each veth is created with both ends already in lab namespaces):
 *
 *                         ┌──────────── <tag>net ────────────┐
 *                         │  BIRD 2 (AS 65001): "the Internet" │
 *                         │  the witness (third site)          │
 *                         └─ n1 10.77.1.1 ──── 10.77.2.1 n2 ──┘
 *                              │                      │
 *            a0 10.77.1.2 ─────┘                      └───── b0 10.77.2.2
 *     ┌── <tag>a: site A (AS 65002) ──┐      ┌── <tag>b: site B (AS 65003) ──┐
 *     │ ExaBGP, sender, controller     │      │ ExaBGP, receiver, controller   │
 *     └─ a1 10.77.3.1 ─────────────────┴──────┴────────────── 10.77.3.2 b1 ─────┘
 *                       the replication link (A–B): `cut(['ab'])` takes it down
 *
 * Site A reaches the witness over a link of its own, a2 10.77.4.2 ── n3 10.77.4.1 (`cut(['aw'])`),
 * so that A can be cut off from the backup and the witness while its BGP session stays up: what BIRD
 * then shows of A is what A's controller decides.
 *
 * BGP sessions are directly connected eBGP, so BIRD resolves each site's next hop: a route is
 * `unicast … via 10.77.x.2`, reachable, not just present. ExaBGP's pipes are /run/exabgp/<tag><site>.
 * Only the processes started here are stopped (by PID), then the namespaces are deleted.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, constants, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Proc, Procs, waitFor } from './daemon-harness.js';

export type SiteName = 'a' | 'b';

export interface LabSite {
  ns: string;
  /** Its address on its link to the router: its BGP next hop. */
  address: string;
  /** The router's address on that link (where the site reaches the router and the witness). */
  router: string;
  /** Its address on the A–B replication link. */
  linkAddress: string;
  /** Where it reaches the witness, and (site A) where the witness reaches it. */
  witness: string;
  witnessSide: string;
  asn: number;
  pipes: { in: string; out: string };
  pipeName: string;
}

export interface BgpRoute {
  /** BIRD's protocol: `sitea` or `siteb`. */
  protocol: string;
  best: boolean;
  via: string | undefined;
}

export interface NetnsLab {
  dir: string;
  net: string;
  site: Record<SiteName, LabSite>;
  /** Run `args` in namespace `ns`; its stdout. */
  exec(ns: string, args: readonly string[]): string;
  birdc(...args: string[]): string;
  /** BIRD's routes for `prefix`, best first as BIRD lists them. */
  routes(prefix: string): BgpRoute[];
  /** Start a site's ExaBGP; resolves once its session is Established and it reads its pipe. */
  exabgp(site: SiteName): Promise<Proc>;
  /**
   * Take links down (or up again): `ab` the A–B replication link (a partition between the sites),
   * `aw` site A's link to the witness.
   */
  cut(links: ReadonlyArray<'ab' | 'aw'>, down: boolean): void;
  stop(): Promise<void>;
}

const RUN = '/run/exabgp';

/** Whether this process can make network namespaces (root, iproute2). */
export function canMakeNamespaces(): boolean {
  return process.getuid?.() === 0 && spawnSync('ip', ['netns', 'list']).status === 0;
}

const WANLAB = join(import.meta.dirname, '..', '..', 'tools', 'wanlab', 'wanlab.mjs');

/** The delay line of tools/wanlab (built there when missing or older than its source): its path. */
function delayline(): string {
  return execFileSync(process.execPath, [WANLAB, 'build'], { encoding: 'utf8' }).trim();
}

/**
 * `wan`: the A–B replication link is a WAN instead of a veth: the delay line of tools/wanlab between
 * TUN devices a1 and b1, `oneWayMs` each way, and with `rate` (`100mbit`) and `loss` (`0.1%`) the
 * lab's tbf and nftables drops on each end (`wanlab.mjs shape`).
 */
export async function startNetnsLab(
  o: { wan?: { oneWayMs: number; rate?: string; loss?: string } } = {},
): Promise<NetnsLab> {
  const dir = mkdtempSync(join(tmpdir(), 'rwan-netns-lab-'));
  const tag = `rw${process.pid % 100000}x${Math.floor(Math.random() * 1000)}`;
  const net = `${tag}net`;
  const made: string[] = [];
  const procs = new Procs(dir);
  const pipes: string[] = [];
  const ip = (...args: string[]) => execFileSync('ip', args, { encoding: 'utf8', timeout: 10_000 });
  const site = (name: SiteName, n: number): LabSite => ({
    ns: `${tag}${name}`,
    address: `10.77.${n}.2`,
    router: `10.77.${n}.1`,
    linkAddress: `10.77.3.${n}`,
    // A has a link of its own to the witness; B reaches it on its link to the router
    witness: n === 1 ? '10.77.4.1' : `10.77.${n}.1`,
    witnessSide: n === 1 ? '10.77.4.2' : `10.77.${n}.2`,
    asn: 65001 + n,
    pipeName: `${tag}${name}`,
    pipes: { in: join(RUN, `${tag}${name}.in`), out: join(RUN, `${tag}${name}.out`) },
  });
  const sites: Record<SiteName, LabSite> = { a: site('a', 1), b: site('b', 2) };
  const lab: NetnsLab = {
    dir,
    net,
    site: sites,
    exec: (ns, args) =>
      execFileSync('ip', ['netns', 'exec', ns, ...args], { encoding: 'utf8', timeout: 10_000 }),
    birdc: (...args) =>
      execFileSync('birdc', ['-s', join(dir, 'bird.ctl'), ...args], { encoding: 'utf8', timeout: 5000 }),
    routes(prefix) {
      const r = spawnSync('birdc', ['-s', join(dir, 'bird.ctl'), 'show', 'route', prefix], {
        encoding: 'utf8',
        timeout: 5000,
      });
      const out = r.stdout ?? '';
      if (out.includes('Network not found')) return [];
      if (r.status !== 0) throw new Error(`birdc: ${out}${r.stderr ?? ''}`);
      return [...out.matchAll(/\[(site[ab])\b[^\]]*\]\s*(\*)?[^\n]*\n\s*(?:via (\S+))?/g)].map((m) => ({
        protocol: m[1] as string,
        best: m[2] === '*',
        via: m[3],
      }));
    },
    async exabgp(name) {
      const s = sites[name];
      const conf = join(dir, `exabgp-${name}.conf`);
      writeFileSync(
        conf,
        `neighbor ${s.router} {
  router-id ${s.address};
  local-address ${s.address};
  local-as ${s.asn};
  peer-as 65001;
  hold-time 9;
  family { ipv4 unicast; }
}
`,
      );
      const p = procs.start(`exabgp-${name}`, ['netns', 'exec', s.ns, '/usr/sbin/exabgp', conf], {
        command: 'ip',
        env: {
          ...process.env,
          'exabgp.daemon.user': 'root',
          'exabgp.api.pipename': s.pipeName,
          'exabgp.log.destination': join(dir, `exabgp-${name}.trace`),
        },
      });
      await waitFor(
        `ExaBGP ${name} Established`,
        15_000,
        () => {
          if (!p.alive) throw new Error(`ExaBGP ${name} exited: ${p.tail()}`);
          return /\s+up\s+\S+\s+Established/.test(lab.birdc('show', 'protocols', `site${name}`));
        },
        () => lab.birdc('show', 'protocols', 'all', `site${name}`),
      );
      // its CLI helper opens the command pipe a little after the session is up
      await waitFor(`ExaBGP ${name} reading its pipe`, 5000, () => {
        try {
          closeSync(openSync(s.pipes.in, constants.O_WRONLY | constants.O_NONBLOCK));
          return true;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENXIO') throw err;
          return false;
        }
      });
      return p;
    },
    cut(links, down) {
      const state = down ? 'down' : 'up';
      for (const l of links) {
        if (l === 'ab') {
          ip('-n', sites.a.ns, 'link', 'set', 'a1', state);
          ip('-n', sites.b.ns, 'link', 'set', 'b1', state);
        } else {
          ip('-n', sites.a.ns, 'link', 'set', 'a2', state);
          ip('-n', net, 'link', 'set', 'n3', state);
        }
      }
    },
    async stop() {
      await procs.killAll();
      for (const ns of made.reverse()) spawnSync('ip', ['netns', 'del', ns]);
      for (const f of pipes) rmSync(f, { force: true });
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    for (const ns of [net, sites.a.ns, sites.b.ns]) {
      ip('netns', 'add', ns);
      made.push(ns);
      ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
    const link = (a: string, aNs: string, aAddr: string, b: string, bNs: string, bAddr: string) => {
      ip('link', 'add', 'name', a, 'netns', aNs, 'type', 'veth', 'peer', 'name', b, 'netns', bNs);
      ip('-n', aNs, 'addr', 'add', `${aAddr}/24`, 'dev', a);
      ip('-n', bNs, 'addr', 'add', `${bAddr}/24`, 'dev', b);
      ip('-n', aNs, 'link', 'set', a, 'up');
      ip('-n', bNs, 'link', 'set', b, 'up');
    };
    link('n1', net, sites.a.router, 'a0', sites.a.ns, sites.a.address);
    link('n2', net, sites.b.router, 'b0', sites.b.ns, sites.b.address);
    if (o.wan) {
      const dl = procs.start('delayline', [sites.a.ns, 'a1', sites.b.ns, 'b1', String(o.wan.oneWayMs)], {
        command: delayline(),
      });
      await waitFor('the delay line', 10_000, () => {
        if (!dl.alive) throw new Error(`the delay line exited: ${dl.tail()}`);
        return dl.log().includes('ready');
      });
      for (const [ns, dev, me, peer] of [
        [sites.a.ns, 'a1', sites.a.linkAddress, sites.b.linkAddress],
        [sites.b.ns, 'b1', sites.b.linkAddress, sites.a.linkAddress],
      ] as const) {
        ip('-n', ns, 'addr', 'add', me, 'peer', peer, 'dev', dev);
        ip('-n', ns, 'link', 'set', dev, 'up');
        const { rate, loss } = o.wan;
        if (rate || loss) {
          execFileSync(
            process.execPath,
            [WANLAB, 'shape', '--ns', ns, '--dev', dev].concat(
              rate ? ['--rate', rate] : [],
              loss ? ['--loss', loss] : [],
            ),
          );
        }
      }
    } else link('a1', sites.a.ns, sites.a.linkAddress, 'b1', sites.b.ns, sites.b.linkAddress);
    link('n3', net, sites.a.witness, 'a2', sites.a.ns, sites.a.witnessSide);
    const peer = (name: SiteName) => `
protocol bgp site${name} {
  local ${sites[name].router} as 65001;
  neighbor ${sites[name].address} as ${sites[name].asn};
  passive on;
  hold time 9;
  ipv4 { import all; export none; };
}`;
    writeFileSync(
      join(dir, 'bird.conf'),
      `log "${join(dir, 'bird.log')}" all;\nrouter id ${sites.a.router};\nprotocol device { scan time 10; }\n${peer('a')}\n${peer('b')}\n`,
    );
    const bird = procs.start(
      'bird',
      ['netns', 'exec', net, 'bird', '-f', '-c', join(dir, 'bird.conf'), '-s', join(dir, 'bird.ctl')],
      { command: 'ip' },
    );
    await waitFor('BIRD', 10_000, () => {
      if (!bird.alive) throw new Error(`BIRD exited: ${bird.tail()}`);
      return spawnSync('birdc', ['-s', join(dir, 'bird.ctl'), 'show', 'status']).status === 0;
    });
    mkdirSync(RUN, { recursive: true });
    for (const s of Object.values(sites)) {
      for (const f of [s.pipes.in, s.pipes.out]) {
        rmSync(f, { force: true });
        execFileSync('mkfifo', ['-m', '600', f]);
        pipes.push(f);
      }
    }
  } catch (err) {
    await lab.stop();
    throw err;
  }
  return lab;
}
