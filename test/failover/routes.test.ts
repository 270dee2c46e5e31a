/**
 * Routes: what is accepted and how it is written for ExaBGP, what is refused and why — and that no
 * attribute, however it is written, can put a second command into the one line built from it.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  announceCommand,
  parseAddress,
  parsePrefix,
  parseRoute,
  type RouteSpec,
  withdrawCommand,
} from '../../src/failover/routes.js';
import { codeOf } from '../helpers.js';

describe('parseRoute: accepted, canonical, written as ExaBGP 4.x reads it', () => {
  const cases: Array<[string, RouteSpec, string, string]> = [
    [
      'a v4 prefix, next hop self by default',
      { prefix: '203.0.113.0/24' },
      'announce route 203.0.113.0/24 next-hop self',
      'withdraw route 203.0.113.0/24 next-hop self',
    ],
    [
      'a /32 service address, every attribute',
      {
        prefix: '192.0.2.10/32',
        nextHop: '192.0.2.1',
        med: 100,
        localPreference: '200',
        asPath: [65002, '65002'],
        communities: ['65000:100', 'NO-EXPORT'],
      },
      'announce route 192.0.2.10/32 next-hop 192.0.2.1 med 100 local-preference 200 as-path [ 65002 65002 ] community [ 65000:100 no-export ]',
      'withdraw route 192.0.2.10/32 next-hop 192.0.2.1',
    ],
    [
      'a v6 prefix in upper case with zeros written out, to two neighbors',
      { prefix: '2001:DB8:0:0::/48', nextHop: 'self', neighbors: ['10.200.0.2', '2001:db8::0:1'] },
      'neighbor 10.200.0.2 , neighbor 2001:db8::1 announce route 2001:db8::/48 next-hop self',
      'neighbor 10.200.0.2 , neighbor 2001:db8::1 withdraw route 2001:db8::/48 next-hop self',
    ],
    [
      'a v6 next hop, MED 0, the largest 4-byte ASN',
      { prefix: '2001:db8:10::/64', nextHop: '2001:db8::a', med: 0, asPath: [4294967295] },
      'announce route 2001:db8:10::/64 next-hop 2001:db8::a med 0 as-path [ 4294967295 ]',
      'withdraw route 2001:db8:10::/64 next-hop 2001:db8::a',
    ],
    [
      'the default route',
      { prefix: '0.0.0.0/0' },
      'announce route 0.0.0.0/0 next-hop self',
      'withdraw route 0.0.0.0/0 next-hop self',
    ],
  ];
  for (const [name, spec, announce, withdraw] of cases) {
    it(name, () => {
      const r = parseRoute(spec);
      expect(announceCommand(r)).toBe(announce);
      expect(withdrawCommand(r)).toBe(withdraw);
    });
  }

  it('applies a state’s overrides: its MED, and a prepend before the route’s own AS_PATH', () => {
    const r = parseRoute({ prefix: '203.0.113.0/24', med: 100, asPath: [65010] });
    expect(announceCommand(r, { med: 1000, prepend: [65002, 65002] })).toBe(
      'announce route 203.0.113.0/24 next-hop self med 1000 as-path [ 65002 65002 65010 ]',
    );
    expect(codeOf(() => announceCommand(r, { med: -1 }))).toBe('RWAN_ERR_ROUTE');
    expect(codeOf(() => announceCommand(r, { prepend: [0] }))).toBe('RWAN_ERR_ROUTE');
  });
});

describe('parseRoute: refused, naming the field', () => {
  const cases: Array<[string, RouteSpec, string, RegExp]> = [
    ['a host address where a prefix is expected', { prefix: '203.0.113.7' }, 'route.prefix', /host address/],
    ['a v6 host address', { prefix: '2001:db8::1' }, 'route.prefix', /2001:db8::1\/128/],
    ['bits set beyond the mask', { prefix: '203.0.113.7/24' }, 'route.prefix', /203\.0\.113\.0\/24/],
    ['v6 bits beyond the mask', { prefix: '2001:db8::1/32' }, 'route.prefix', /2001:db8::\/32/],
    ['a length past the family', { prefix: '10.0.0.0/33' }, 'route.prefix', /not an IPv4 or IPv6 prefix/],
    ['a leading zero', { prefix: '010.0.0.0/8' }, 'route.prefix', /not an IPv4 or IPv6 prefix/],
    ['a name', { prefix: 'example.net/24' }, 'route.prefix', /not an IPv4 or IPv6 prefix/],
    ['a number', { prefix: 24 }, 'route.prefix', /expected a string/],
    ['no prefix', {} as RouteSpec, 'route.prefix', /expected a string/],
    [
      'a v6 next hop for a v4 prefix',
      { prefix: '203.0.113.0/24', nextHop: '2001:db8::1' },
      'route.nextHop',
      /family|ipv6 next hop/,
    ],
    [
      'a v4 next hop for a v6 prefix',
      { prefix: '2001:db8::/32', nextHop: '192.0.2.1' },
      'route.nextHop',
      /ipv4 next hop/,
    ],
    [
      'a prefix as next hop',
      { prefix: '203.0.113.0/24', nextHop: '192.0.2.0/24' },
      'route.nextHop',
      /not a prefix/,
    ],
    [
      'a zone in a next hop',
      { prefix: '2001:db8::/32', nextHop: 'fe80::1%eth0' },
      'route.nextHop',
      /not an IPv4 or IPv6 address/,
    ],
    ['a negative MED', { prefix: '203.0.113.0/24', med: -1 }, 'route.med', /0 to 4294967295/],
    ['a MED past 32 bits', { prefix: '203.0.113.0/24', med: 2 ** 32 }, 'route.med', /0 to 4294967295/],
    [
      'a fractional local preference',
      { prefix: '203.0.113.0/24', localPreference: 1.5 },
      'route.localPreference',
      /integer/,
    ],
    ['a MED in hex', { prefix: '203.0.113.0/24', med: '0x10' }, 'route.med', /integer/],
    ['AS 0 in the path', { prefix: '203.0.113.0/24', asPath: [0] }, 'route.asPath[0]', /1 to 4294967295/],
    [
      'a path of 33',
      { prefix: '203.0.113.0/24', asPath: Array(33).fill(65002) },
      'route.asPath',
      /at most 32/,
    ],
    [
      'a community past 16 bits',
      { prefix: '203.0.113.0/24', communities: ['65536:1'] },
      'route.communities[0]',
      /65535/,
    ],
    [
      'a made-up community',
      { prefix: '203.0.113.0/24', communities: ['graceful'] },
      'route.communities[0]',
      /ASN:value/,
    ],
    [
      'a large community',
      { prefix: '203.0.113.0/24', communities: ['1:2:3'] },
      'route.communities[0]',
      /ASN:value/,
    ],
    [
      'a neighbor that is a name',
      { prefix: '203.0.113.0/24', neighbors: ['bird'] },
      'route.neighbors[0]',
      /address/,
    ],
    [
      'an unknown field',
      { prefix: '203.0.113.0/24', metric: 5 } as RouteSpec,
      'route.metric',
      /unknown field/,
    ],
  ];
  for (const [name, spec, where, message] of cases) {
    it(name, () => {
      let err: unknown;
      try {
        parseRoute(spec);
      } catch (e) {
        err = e;
      }
      expect(err).toMatchObject({ code: 'RWAN_ERR_ROUTE', details: { where } });
      expect((err as Error).message).toMatch(message);
    });
  }
});

describe('no attribute can inject a second ExaBGP command', () => {
  const injections = [
    '\nannounce route 0.0.0.0/0 next-hop self',
    '\r\nwithdraw route 203.0.113.0/24',
    '\u2028announce route 0.0.0.0/0',
    '\u0000',
    '\u001b[2J',
    '\u0085',
    '\t',
  ];
  const fields: Array<[string, (bad: string) => RouteSpec]> = [
    ['prefix', (bad) => ({ prefix: `203.0.113.0/24${bad}` })],
    ['nextHop', (bad) => ({ prefix: '203.0.113.0/24', nextHop: `self${bad}` })],
    ['med', (bad) => ({ prefix: '203.0.113.0/24', med: `100${bad}` })],
    ['localPreference', (bad) => ({ prefix: '203.0.113.0/24', localPreference: `${bad}100` })],
    ['asPath[0]', (bad) => ({ prefix: '203.0.113.0/24', asPath: [`65002${bad}`] })],
    ['communities[0]', (bad) => ({ prefix: '203.0.113.0/24', communities: [`65000:1${bad}`] })],
    ['neighbors[0]', (bad) => ({ prefix: '203.0.113.0/24', neighbors: [`10.0.0.1${bad}`] })],
  ];
  for (const [field, make] of fields) {
    it(`in ${field}: refused as a control character`, () => {
      for (const bad of injections) {
        let err: unknown;
        try {
          parseRoute(make(bad));
        } catch (e) {
          err = e;
        }
        expect(err, JSON.stringify(bad)).toMatchObject({
          code: 'RWAN_ERR_ROUTE',
          details: { where: `route.${field}` },
        });
        expect((err as Error).message).toMatch(/control character/);
      }
    });
  }

  it('whatever the fields hold, an accepted route gives one line of printable ASCII per command', () => {
    const anyText = fc.oneof(
      fc.string(),
      fc.constantFrom('self', '203.0.113.0/24', '2001:db8::/32', '192.0.2.1', '65000:1', 'no-export', '100'),
    );
    fc.assert(
      fc.property(
        fc.record(
          {
            prefix: anyText,
            nextHop: anyText,
            med: fc.oneof(anyText, fc.integer()),
            asPath: fc.array(fc.oneof(anyText, fc.integer()), { maxLength: 3 }),
            communities: fc.array(anyText, { maxLength: 3 }),
            neighbors: fc.array(anyText, { maxLength: 2 }),
          },
          { requiredKeys: ['prefix'] },
        ),
        (spec) => {
          let r: ReturnType<typeof parseRoute>;
          try {
            r = parseRoute(spec);
          } catch (e) {
            expect((e as { code?: string }).code).toBe('RWAN_ERR_ROUTE');
            return;
          }
          for (const c of [announceCommand(r), withdrawCommand(r)]) {
            expect(c).toMatch(/^[\x20-\x7e]+$/);
            expect(c.match(/announce|withdraw/g)).toHaveLength(1);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('parseAddress, parsePrefix', () => {
  it('canonicalise', () => {
    expect(parseAddress(' 2001:DB8:0:0:1:0:0:1 ', 'a')).toEqual({
      family: 'ipv6',
      address: '2001:db8::1:0:0:1',
    });
    expect(parseAddress('::', 'a').address).toBe('::');
    expect(parseAddress('::1', 'a').address).toBe('::1');
    expect(parseAddress('1::', 'a').address).toBe('1::');
    // RFC 5952: the longest run of zeros, the first of equal ones; a single zero group stays
    expect(parseAddress('1:0:0:2:0:0:0:3', 'a').address).toBe('1:0:0:2::3');
    expect(parseAddress('1:0:0:2:0:0:3:4', 'a').address).toBe('1::2:0:0:3:4');
    expect(parseAddress('1:0:2:3:4:5:6:7', 'a').address).toBe('1:0:2:3:4:5:6:7');
    expect(parsePrefix('::/0', 'p')).toEqual({ family: 'ipv6', prefix: '::/0' });
    expect(parsePrefix('192.0.2.0/24', 'p')).toEqual({ family: 'ipv4', prefix: '192.0.2.0/24' });
  });
});
