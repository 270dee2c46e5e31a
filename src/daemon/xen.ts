/**
 * The Xen adapter's two daemons (docs/xen-stream.md):
 *
 *   tunnel        run by xl on the primary as `xl remus -s "remus-wan tunnel …" DOMAIN HOST`:
 *                 stdin (xl's stream) ─► XenStreamSource ─► SenderSession ─► the backup; the banner
 *                 on stdout once the backup's receive command has given it; exits when the stream
 *                 has ended and every epoch is acknowledged
 *   xen-receive   on the backup: listen() ─► XenReceiverSession ─► `xl migrate-receive -r [-e]`;
 *                 GET /status, /metrics, POST /promote (end the stream: xl fails over); exits when
 *                 the receive command does
 */
import { writeSync } from 'node:fs';
import { nativeLoadError, setPipeSize } from '../codec/hot-loops.js';
import { RwanError } from '../errors.js';
import { LoopDelay, senderMetrics, xenReceiverMetrics } from '../observability/metrics.js';
import { Capability } from '../protocol/frames.js';
import type { SenderEpochStats } from '../replication/sender.js';
import { listen } from '../transport/security.js';
import { XL_BANNER } from '../xen/format.js';
import { ReceiveCommand } from '../xen/receive-command.js';
import { fdInput, XenStreamSource } from '../xen/stream-source.js';
import { type XenEpochStats, XenReceiverSession } from '../xen/xen-receiver.js';
import type { TunnelSettings, XenReceiveSettings } from './config.js';
import {
  closingOnFailure,
  makeSenderSession,
  promoteHandler,
  StatsFile,
  serveHttp,
  startDaemon,
  trimEverySecond,
  untilSignal,
} from './run.js';

/** Run `remus-wan tunnel` on xl's stdin and stdout. Returns the exit status. */
export async function runTunnel(s: TunnelSettings): Promise<number> {
  const { log, security } = await startDaemon(s, 'send');
  // the output-commit gate needs xl's pipe at one page (docs/xen-stream.md, Output commit)
  let gate: { pipeBytes: number } | undefined;
  if (s.gate) {
    const bytes = setPipeSize?.(0, 4096);
    if (bytes !== undefined && bytes > 0) gate = { pipeBytes: bytes };
    else
      log.warn(
        { reason: bytes === undefined ? nativeLoadError : `errno ${-bytes}` },
        'cannot shrink the stdin pipe: checkpoints are not held until the backup acknowledges them',
      );
  }
  const source = new XenStreamSource(fdInput(0), gate ? { gate } : {});
  const { session, encoder } = makeSenderSession(s, security, source, log, {
    epochMs: 0, // the stream sets the pace
    capabilities: Capability.XEN_STREAM | (s.detach ? Capability.XEN_DETACH : 0),
  });
  // the banner goes to xl once the backup has checked its receive command's (it answers HELLO then),
  // and after it what that command writes (xl's back channel), each byte once
  let bannerGiven = false;
  let backWritten = 0;
  const early: Array<[number, Buffer]> = [];
  const toXl = (offset: number, data: Buffer) => {
    if (offset > backWritten) {
      log.error({ offset, written: backWritten }, 'back channel bytes lost: the backup kept too few');
      backWritten = offset;
    }
    const from = backWritten - offset;
    if (from < data.length) writeSync(1, data.subarray(from));
    backWritten = Math.max(backWritten, offset + data.length);
  };
  session.on('stream-data', (offset: number, data: Buffer) => {
    if (bannerGiven) toXl(offset, data);
    else early.push([offset, data]);
  });
  session.on('state', (st: string) => {
    log.info({ state: st }, 'state');
    if (st === 'replicating' && !bannerGiven) {
      bannerGiven = true;
      writeSync(1, XL_BANNER);
      for (const [offset, data] of early.splice(0)) toXl(offset, data);
    }
  });
  const stats = s.statsFile ? new StatsFile(s.statsFile) : undefined;
  const trim = trimEverySecond();
  session.on('epoch', (e: SenderEpochStats) => {
    source.acked(e.epoch);
    const x = source.epochs.get(e.epoch);
    stats?.write({
      ...e,
      checkpoint: x?.checkpoint,
      checkpointEnd: x?.last,
      ...(x?.last ? { gated: source.wasGated(x.checkpoint) } : {}),
    });
    source.epochs.delete(e.epoch);
  });
  const http = s.metrics
    ? await serveHttp(
        s.metrics,
        senderMetrics(session, new LoopDelay()),
        () => ({
          role: 'tunnel',
          name: s.name,
          state: session.state,
          peer: `${s.connect.host}:${s.connect.port}`,
          lastAckedEpoch: session.lastAckedEpoch,
          epochsInFlight: session.inFlight,
          streamBytes: source.position,
          gate: gate ?? null,
          checkpoints: source.counters,
          counters: session.counters,
        }),
        {},
        log,
      )
    : undefined;
  log.info({ backup: `${s.connect.host}:${s.connect.port}`, detach: s.detach, gate }, 'tunnel');
  // the stream ended (xl stopped): stop once every epoch of it is acknowledged
  const finished = source.drained.then(async (end) => {
    log.info({ end, epochs: source.captured }, 'the stream ended');
    while (session.lastAckedEpoch !== source.captured && session.state !== 'stopped')
      await new Promise((r) => setTimeout(r, 20));
    await session.stop();
  });
  const signal = untilSignal().then(() => session.stop());
  await Promise.race([session.run(), finished, signal]);
  await session.stop();
  clearInterval(trim);
  http?.close();
  await stats?.close();
  await encoder.close();
  source.close();
  const err = session.error;
  if (err) {
    log.error({ code: err.code, err: err.message }, 'stopped on error');
    return err.exitCode;
  }
  return 0;
}

/** Run `remus-wan xen-receive` until its receive command exits (or SIGTERM/SIGINT). */
export async function runXenReceive(s: XenReceiveSettings): Promise<number> {
  const { log, security } = await startDaemon(s, 'receive');
  const sink = new ReceiveCommand({ command: s.receiveCommand, bannerTimeoutMs: s.handshakeTimeoutMs, log });
  const session = new XenReceiverSession({
    sink,
    pageSize: s.pageSize,
    cacheBytes: s.cacheBytes,
    heartbeatMs: s.heartbeatMs,
    idleTimeoutMs: s.idleTimeoutMs,
    handshakeTimeoutMs: s.handshakeTimeoutMs,
    deadTimeMs: s.deadTimeMs,
    peerName: s.name,
    log,
  });
  const stats = s.statsFile ? new StatsFile(s.statsFile) : undefined;
  session.on('epoch', (e: XenEpochStats) => stats?.write(e));
  session.on('ended', (why: string) =>
    log.info({ why }, 'the stream ended: the receive command’s stdin is closed'),
  );
  const loop = new LoopDelay();
  const status = () => ({
    role: 'xen-receive',
    name: s.name,
    session: session.sessionId,
    primary: session.detectorState,
    promoted: session.promoted,
    lastCommittedEpoch: session.lastEpoch,
    lastCompleteCheckpoint: session.lastCompleteCheckpoint,
    ended: session.ended ?? null,
    receiveCommand: { command: s.receiveCommand, exit: sink.exitStatus ?? null },
    connectedChannels: session.connectedChannels,
    counters: session.counters,
  });
  // the endpoint before the listener: a receiver that cannot serve it accepts no primary
  const http = s.metrics
    ? await serveHttp(s.metrics, xenReceiverMetrics(session, loop), status, promoteHandler(session), log)
    : undefined;
  const listener = await closingOnFailure(http, () =>
    listen(
      security,
      { host: s.listen.host, port: s.listen.port, handshakeTimeoutMs: s.handshakeTimeoutMs },
      (socket, peer) => {
        socket.on('error', () => undefined);
        session.accept(socket, peer);
      },
      (err, remote) => log.warn({ remote, code: err.code, err: err.message }, 'connection refused'),
    ),
  );
  log.info({ listen: `${s.listen.host}:${listener.port}`, command: s.receiveCommand }, 'listening');
  const why = await Promise.race([untilSignal(), sink.done.then(() => 'the receive command exited')]);
  log.info({ why }, 'stopping');
  session.close();
  await listener.close();
  loop.stop();
  http?.close();
  await stats?.close();
  const exit = sink.exitStatus;
  if (exit && exit.code !== 0) {
    log.error({ exit }, 'the receive command failed');
    return new RwanError('RWAN_ERR_PEER', 'the receive command failed').exitCode;
  }
  return 0;
}
