/**
 * The service routes remus-failover announces and withdraws, checked, and the ExaBGP 4.x text commands
 * that carry them. Pure.
 *
 *   RouteSpec (a config file's or the command line's words)
 *     ─► parseRoute ─► Route (canonical, every field checked) ─► announceCommand / withdrawCommand
 *
 * Nothing a user writes reaches a command unchecked: every field is parsed into a number, an address or
 * a community from a fixed alphabet, and the command is built from those values, never from the text
 * given. A control character or a line break anywhere is refused by name (RWAN_ERR_ROUTE), so no
 * attribute can end the command early and start a second one on the next line. Addresses go through
 * ip-num: a prefix must be one (a length, and no bits set beyond it), a next hop must be of the
 * prefix's family.
 */
import { IPv4, IPv4CidrRange, IPv6, IPv6CidrRange, Validator } from 'ip-num';
import { RwanError } from '../errors.js';

/** A route as written by a user (config file or flags): strings and numbers, unchecked. */
export interface RouteSpec {
  /** The service prefix, e.g. `203.0.113.0/24` or `2001:db8:10::/48`. */
  prefix: unknown;
  /** `self` (the default: the speaker's own address on the session) or an address of the prefix's family. */
  nextHop?: unknown;
  /** MULTI_EXIT_DISC, 0 … 2^32 − 1. */
  med?: unknown;
  /** LOCAL_PREF (iBGP), 0 … 2^32 − 1. */
  localPreference?: unknown;
  /** AS numbers to put in the AS_PATH, in order: prepending the local AS makes the route less preferred. */
  asPath?: unknown;
  /** Communities: `ASN:value` (two 16-bit numbers) or `no-export`, `no-advertise`, `no-export-subconfed`, `nopeer`. */
  communities?: unknown;
  /** Announce only to these neighbors (their addresses); default: every neighbor. */
  neighbors?: unknown;
}

/** A checked route, in canonical form. */
export interface Route {
  family: 'ipv4' | 'ipv6';
  /** Canonical prefix (IPv6 compressed, lower case). */
  prefix: string;
  /** `self` or a canonical address of the same family. */
  nextHop: string;
  med?: number;
  localPreference?: number;
  asPath: number[];
  communities: string[];
  /** Canonical neighbor addresses; empty: every neighbor. */
  neighbors: string[];
}

/** Attributes a state may change on announcement (healthcheck style: a worse MED, a longer AS_PATH). */
export interface RouteOverrides {
  med?: number;
  /** AS numbers put before the route's own AS_PATH. */
  prepend?: number[];
}

/** Largest value of a 32-bit BGP attribute (MED, LOCAL_PREF, a 4-byte ASN). */
const U32 = 2 ** 32 - 1;
/** Well-known communities ExaBGP names (RFC 1997, RFC 3765). */
const WELL_KNOWN = new Set(['no-export', 'no-advertise', 'no-export-subconfed', 'nopeer']);
/** AS_PATH entries one announcement may carry (a prepend of more is a mistake, not a policy). */
const MAX_AS_PATH = 32;
/** Communities one route may carry. */
const MAX_COMMUNITIES = 32;
/** Neighbors one route may name. */
const MAX_NEIGHBORS = 64;

function refuse(where: string, message: string, details: Record<string, unknown> = {}): RwanError {
  return new RwanError('RWAN_ERR_ROUTE', `${where}: ${message}`, { details: { where, ...details } });
}

/** The code points of `s` that no command may carry (C0 and C1 controls, DEL, line and paragraph separators). */
function controlCharacter(s: string): string | undefined {
  for (const ch of s) {
    const c = ch.codePointAt(0) ?? 0;
    if (c < 0x20 || (c >= 0x7f && c <= 0x9f) || c === 0x2028 || c === 0x2029) {
      return `U+${c.toString(16).toUpperCase().padStart(4, '0')}`;
    }
  }
  return undefined;
}

/** `v` as a trimmed string with no control character, or a refusal naming the field. */
function text(v: unknown, where: string): string {
  if (typeof v !== 'string') throw refuse(where, `expected a string, got ${typeof v}`);
  const bad = controlCharacter(v);
  if (bad !== undefined) {
    throw refuse(
      where,
      `a control character (${bad}) is not allowed: it could end the command and start another`,
      {
        character: bad,
      },
    );
  }
  return v.trim();
}

/** An integer in [min, max] from a number or a decimal string. */
function integer(v: unknown, where: string, min: number, max: number): number {
  const n = typeof v === 'number' ? v : /^\d+$/.test(text(v, where)) ? Number(text(v, where)) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw refuse(where, `${JSON.stringify(v)}: expected an integer from ${min} to ${max}`);
  }
  return n;
}

/** An IPv6 address in RFC 5952 form: lower case, no leading zeros, the longest run of two or more zero groups as `::`. */
function formatIPv6(value: bigint): string {
  const groups = Array.from({ length: 8 }, (_, i) =>
    ((value >> BigInt(112 - 16 * i)) & 0xffffn).toString(16),
  );
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = Math.max(j, i + 1);
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

/** A canonical IPv4 or IPv6 address (no prefix length, no zone), with its family. */
export function parseAddress(v: unknown, where: string): { family: 'ipv4' | 'ipv6'; address: string } {
  const s = text(v, where);
  if (s.includes('/')) throw refuse(where, `${s}: expected an address, not a prefix`);
  if (Validator.isValidIPv4String(s)[0]) return { family: 'ipv4', address: IPv4.fromString(s).toString() };
  if (!s.includes('%') && Validator.isValidIPv6String(s)[0]) {
    return { family: 'ipv6', address: formatIPv6(IPv6.fromString(s).getValue()) };
  }
  throw refuse(where, `${s}: not an IPv4 or IPv6 address`);
}

/** A canonical prefix: an address, a length, and no bits set beyond it. */
export function parsePrefix(v: unknown, where: string): { family: 'ipv4' | 'ipv6'; prefix: string } {
  const s = text(v, where);
  if (!s.includes('/')) {
    throw refuse(
      where,
      `${s}: a host address where a prefix is expected (write it with its length, e.g. ${s}/${s.includes(':') ? 128 : 32})`,
    );
  }
  const v4 = Validator.isValidIPv4CidrNotation(s)[0];
  const v6 = !v4 && Validator.isValidIPv6CidrNotation(s)[0];
  if (!v4 && !v6) throw refuse(where, `${s}: not an IPv4 or IPv6 prefix`);
  const inRange = v4 ? Validator.isValidIPv4CidrRange(s)[0] : Validator.isValidIPv6CidrRange(s)[0];
  if (!inRange) {
    const first = v4
      ? IPv4CidrRange.fromCidr(s).getFirst().toString()
      : formatIPv6(IPv6CidrRange.fromCidr(s).getFirst().getValue());
    throw refuse(where, `${s}: bits are set beyond the mask (the prefix is ${first}/${s.split('/')[1]})`);
  }
  if (v4) return { family: 'ipv4', prefix: IPv4CidrRange.fromCidr(s).toCidrString() };
  const r = IPv6CidrRange.fromCidr(s);
  return { family: 'ipv6', prefix: `${formatIPv6(r.getFirst().getValue())}/${r.cidrPrefix.getValue()}` };
}

/** A community: `ASN:value` (two 16-bit numbers) or a well-known name. */
function parseCommunity(v: unknown, where: string): string {
  const s = text(v, where).toLowerCase();
  if (WELL_KNOWN.has(s)) return s;
  const m = /^(\d{1,5}):(\d{1,5})$/.exec(s);
  if (!m) {
    throw refuse(
      where,
      `${JSON.stringify(s)}: expected ASN:value (two numbers from 0 to 65535) or one of ${[...WELL_KNOWN].join(', ')}`,
    );
  }
  const a = integer(m[1], where, 0, 65535);
  const b = integer(m[2], where, 0, 65535);
  return `${a}:${b}`;
}

/** A list field: an array (or, from a flag, one value), at most `max` entries. */
function list(v: unknown, where: string, max: number): unknown[] {
  if (v === undefined) return [];
  const a = Array.isArray(v) ? v : [v];
  if (a.length > max) throw refuse(where, `${a.length} entries: at most ${max}`);
  return a;
}

/**
 * Check a route and put it in canonical form.
 * @param where names the route in errors (`routes[0]`, `--route`)
 * @throws RwanError RWAN_ERR_ROUTE naming the field (`where.med`, `where.communities[2]`)
 */
export function parseRoute(spec: RouteSpec, where = 'route'): Route {
  if (spec === null || typeof spec !== 'object') throw refuse(where, 'expected an object');
  const known = new Set([
    'prefix',
    'nextHop',
    'med',
    'localPreference',
    'asPath',
    'communities',
    'neighbors',
  ]);
  for (const k of Object.keys(spec)) {
    if (!known.has(k)) throw refuse(`${where}.${k}`, `unknown field (known: ${[...known].join(', ')})`);
  }
  const { family, prefix } = parsePrefix(spec.prefix, `${where}.prefix`);
  let nextHop = 'self';
  if (spec.nextHop !== undefined && text(spec.nextHop, `${where}.nextHop`).toLowerCase() !== 'self') {
    const nh = parseAddress(spec.nextHop, `${where}.nextHop`);
    if (nh.family !== family) {
      throw refuse(
        `${where}.nextHop`,
        `${nh.address}: an ${nh.family} next hop for an ${family} prefix (${prefix})`,
      );
    }
    nextHop = nh.address;
  }
  const route: Route = {
    family,
    prefix,
    nextHop,
    asPath: list(spec.asPath, `${where}.asPath`, MAX_AS_PATH).map((a, i) =>
      integer(a, `${where}.asPath[${i}]`, 1, U32),
    ),
    communities: list(spec.communities, `${where}.communities`, MAX_COMMUNITIES).map((c, i) =>
      parseCommunity(c, `${where}.communities[${i}]`),
    ),
    neighbors: list(spec.neighbors, `${where}.neighbors`, MAX_NEIGHBORS).map(
      (n, i) => parseAddress(n, `${where}.neighbors[${i}]`).address,
    ),
  };
  if (spec.med !== undefined) route.med = integer(spec.med, `${where}.med`, 0, U32);
  if (spec.localPreference !== undefined) {
    route.localPreference = integer(spec.localPreference, `${where}.localPreference`, 0, U32);
  }
  return route;
}

/** `neighbor A , neighbor B ` for a route that names its neighbors, else nothing (every neighbor). */
function selector(r: Route): string {
  return r.neighbors.length === 0 ? '' : `${r.neighbors.map((n) => `neighbor ${n}`).join(' , ')} `;
}

/**
 * `command`, checked once more before it is written to ExaBGP (by the builders here and by both
 * clients): one line of printable ASCII.
 * @throws RwanError RWAN_ERR_INTERNAL otherwise (commands come from the builders, never from a user)
 */
export function commandLine(command: string): string {
  if (!/^[\x20-\x7e]+$/.test(command)) {
    throw new RwanError(
      'RWAN_ERR_INTERNAL',
      `an ExaBGP command is not one printable line: ${JSON.stringify(command)}`,
    );
  }
  return command;
}

/**
 * The ExaBGP 4.x text command announcing `r` (one line, no newline), with a state's overrides:
 * `[neighbor A , neighbor B ]announce route P next-hop NH [med M] [local-preference L] [as-path [ … ]] [community [ … ]]`.
 */
export function announceCommand(r: Route, o: RouteOverrides = {}): string {
  const med = o.med ?? r.med;
  if (o.med !== undefined) integer(o.med, 'med override', 0, U32);
  const asPath = [...(o.prepend ?? []).map((a, i) => integer(a, `prepend[${i}]`, 1, U32)), ...r.asPath];
  const parts = [`${selector(r)}announce route ${r.prefix} next-hop ${r.nextHop}`];
  if (med !== undefined) parts.push(`med ${med}`);
  if (r.localPreference !== undefined) parts.push(`local-preference ${r.localPreference}`);
  if (asPath.length > 0) parts.push(`as-path [ ${asPath.join(' ')} ]`);
  if (r.communities.length > 0) parts.push(`community [ ${r.communities.join(' ')} ]`);
  return commandLine(parts.join(' '));
}

/** The ExaBGP 4.x text command withdrawing `r`: `[neighbor … ]withdraw route P next-hop NH`. */
export function withdrawCommand(r: Route): string {
  return commandLine(`${selector(r)}withdraw route ${r.prefix} next-hop ${r.nextHop}`);
}
