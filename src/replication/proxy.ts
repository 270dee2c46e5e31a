/**
 * The output-commit proxy (`remus-wan send --proxy LISTEN=SERVICE`): clients connect to LISTEN, the
 * proxy connects each to the protected service. Client → service bytes pass at once; service →
 * client bytes, and the service's end of a stream, are held (output-commit.ts) until the backup has
 * acknowledged the epoch whose capture followed them, so that no client ever sees an answer the backup
 * could not give after a failover.
 *
 * Bounded: while more than `maxHeldBytes` are held, the proxy stops reading from the service (TCP
 * back-pressure reaches it) and reads again below half of that. A client that goes away drops what
 * was held for it.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { RwanError } from '../errors.js';
import { type Held, OutputCommit } from './output-commit.js';
import type { Log } from './sender.js';

export interface ProxyOptions {
  listen: { host: string; port: number };
  service: { host: string; port: number };
  maxHeldBytes: number;
  log: Log;
}

export interface Proxy {
  readonly gate: OutputCommit;
  readonly port: number;
  /** Streams open, and the service sockets paused for back-pressure. */
  readonly counters: { streams: number; opened: number; paused: number };
  close(): Promise<void>;
}

export async function startProxy(o: ProxyOptions): Promise<Proxy> {
  const clients = new Map<number, Socket>();
  const services = new Map<number, Socket>();
  const paused = new Set<Socket>();
  let nextId = 0;
  const counters = { streams: 0, opened: 0, paused: 0 };
  const gate = new OutputCommit((id: number, held: Held) => {
    const c = clients.get(id);
    if (c && !c.destroyed) {
      if (held.kind === 'data') c.write(held.bytes);
      else c.end();
    }
    if (gate.heldBytes < o.maxHeldBytes / 2) {
      for (const s of paused) s.resume();
      paused.clear();
      counters.paused = 0;
    }
  });
  const server: Server = createServer({ noDelay: true }, (client) => {
    const id = ++nextId;
    counters.opened++;
    counters.streams++;
    const service = connect({ host: o.service.host, port: o.service.port, noDelay: true });
    clients.set(id, client);
    services.set(id, service);
    const close = () => {
      if (!clients.has(id)) return;
      clients.delete(id);
      services.delete(id);
      paused.delete(service);
      gate.drop(id);
      counters.streams--;
      client.destroy();
      service.destroy();
    };
    client.on('data', (d: Buffer) => service.write(d)); // to the service: at once
    client.on('end', () => service.end());
    client.on('error', close);
    client.on('close', close);
    service.on('data', (d: Buffer) => {
      gate.hold(id, { kind: 'data', bytes: d });
      if (gate.heldBytes > o.maxHeldBytes && !paused.has(service)) {
        service.pause();
        paused.add(service);
        counters.paused = paused.size;
      }
    });
    service.on('end', () => gate.hold(id, { kind: 'end' }));
    service.on('error', (err) => {
      o.log.warn({ stream: id, err: err.message }, 'proxy: the service connection failed');
      close();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) =>
      reject(
        new RwanError('RWAN_ERR_CONNECT', `proxy ${o.listen.host}:${o.listen.port}: ${err.message}`, {
          cause: err,
        }),
      ),
    );
    server.listen(o.listen.port, o.listen.host, () => resolve());
  });
  o.log.info(
    { listen: `${o.listen.host}:${o.listen.port}`, service: `${o.service.host}:${o.service.port}` },
    'output-commit proxy',
  );
  return {
    gate,
    port: (server.address() as { port: number }).port,
    counters,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of clients.values()) c.destroy();
        for (const s of services.values()) s.destroy();
        server.close(() => resolve());
      }),
  };
}
