/**
 * Boots a real QEMU guest for integration tests: a Debian kernel from /boot plus an initramfs made
 * here (busybox-static and an /init that keeps rewriting 32 MiB of tmpfs with random bytes, so
 * page-sampling sees content change). TCG only: /dev/kvm on these machines cannot run a stock kernel.
 *
 * Needs the Debian packages qemu-system-x86, linux-image-amd64 and busybox-static. The initramfs
 * (newc cpio, gzip) is written in TypeScript, so neither cpio nor gzip is needed.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

/** What /init prints on the serial console once the memory writer runs. */
export const GUEST_READY_MARKER = 'RWAN_GUEST_READY';

const QEMU = 'qemu-system-x86_64';
const BUSYBOX = '/bin/busybox';

const INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/shm
mount -t tmpfs -o size=64m tmpfs /dev/shm
echo ${GUEST_READY_MARKER} > /dev/ttyS0
while :; do dd if=/dev/urandom of=/dev/shm/x bs=1M count=32 2>/dev/null; done
`;

/** A running guest. */
export interface QemuGuest {
  /** QMP UNIX socket path. */
  socketPath: string;
  /** Serial console log path. */
  serialLog: string;
  /** The QEMU process id. */
  pid: number;
  /** Resolves once /init printed {@link GUEST_READY_MARKER}; rejects after `timeoutMs` or if QEMU exits. */
  waitReady(timeoutMs: number): Promise<void>;
  /** Kill this QEMU (only it) and remove the temp dir. */
  stop(): Promise<void>;
}

/** Options of {@link startQemuGuest}. */
export interface QemuGuestOptions {
  /** Guest RAM in MiB (page-sampling only samples RAM blocks of 128 MiB or more). Default 512. */
  memoryMiB?: number;
  /** Start with the vCPU paused (`-S`): QMP works, the guest does not run. */
  paused?: boolean;
}

/** Build the initramfs, start QEMU and wait for its QMP socket (not for the guest to boot). */
export async function startQemuGuest(options: QemuGuestOptions = {}): Promise<QemuGuest> {
  const kernel = findKernel();
  if (!existsSync(BUSYBOX))
    throw new Error(`${BUSYBOX} not found: install the Debian package busybox-static`);
  const dir = await mkdtemp(join(tmpdir(), 'rwan-qemu-'));
  const socketPath = join(dir, 'qmp.sock');
  const serialLog = join(dir, 'serial.log');
  const initrd = join(dir, 'initrd.gz');
  await writeFile(initrd, buildInitramfs(readFileSync(BUSYBOX)));
  const args = [
    ...['-machine', 'pc,accel=tcg', '-cpu', 'max', '-m', String(options.memoryMiB ?? 512)],
    ...['-nographic', '-nodefaults', '-display', 'none', '-no-reboot'],
    ...['-kernel', kernel, '-initrd', initrd, '-append', 'console=ttyS0 quiet panic=-1'],
    ...['-serial', `file:${serialLog}`, '-qmp', `unix:${socketPath},server=on,wait=off`],
    ...(options.paused ? ['-S'] : []),
  ];
  const child = spawn(QEMU, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<string>((resolve) => {
    child.once('error', (err: NodeJS.ErrnoException) =>
      resolve(
        err.code === 'ENOENT'
          ? `${QEMU} not found: install the Debian package qemu-system-x86`
          : `${QEMU}: ${err.message}`,
      ),
    );
    child.once('exit', (code, signal) => resolve(`${QEMU} exited (${code ?? signal}): ${stderr.trim()}`));
  });
  const stop = async () => {
    await killChild(child);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await until(() => existsSync(socketPath), exited, 10_000, 'QMP socket');
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    socketPath,
    serialLog,
    pid: child.pid as number,
    waitReady: (timeoutMs) =>
      until(
        () => existsSync(serialLog) && readFileSyncSafe(serialLog).includes(GUEST_READY_MARKER),
        exited,
        timeoutMs,
        `${GUEST_READY_MARKER} on the serial console (${serialLog})`,
      ),
    stop,
  };
}

/** The newest /boot/vmlinuz-*. */
function findKernel(): string {
  const kernels = existsSync('/boot') ? readdirSync('/boot').filter((f) => f.startsWith('vmlinuz-')) : [];
  const newest = kernels.sort().at(-1);
  if (!newest) throw new Error('no /boot/vmlinuz-*: install the Debian package linux-image-amd64');
  return join('/boot', newest);
}

/** A gzipped newc cpio archive holding /init, /bin/busybox, the mount points and /dev/console. */
export function buildInitramfs(busybox: Buffer): Buffer {
  const entries: CpioEntry[] = [
    ...['bin', 'dev', 'proc', 'sys', 'tmp'].map((name) => ({ name, mode: 0o040755 })),
    { name: 'dev/console', mode: 0o020600, rdev: [5, 1] as const },
    { name: 'bin/busybox', mode: 0o100755, data: busybox },
    { name: 'init', mode: 0o100755, data: Buffer.from(INIT) },
  ];
  return gzipSync(newc(entries), { level: 1 });
}

interface CpioEntry {
  name: string;
  mode: number;
  data?: Buffer;
  rdev?: readonly [number, number];
}

/** The "new ASCII" (newc, magic 070701) cpio format the kernel unpacks. */
function newc(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  const pad4 = (n: number) => Buffer.alloc((4 - (n % 4)) % 4);
  const all = [...entries, { name: 'TRAILER!!!', mode: 0 }];
  all.forEach((e: CpioEntry, i) => {
    const size = e.data?.length ?? 0;
    const name = Buffer.from(`${e.name}\0`);
    const fields = [
      i + 1,
      e.mode,
      0,
      0,
      1,
      0,
      size,
      0,
      0,
      e.rdev?.[0] ?? 0,
      e.rdev?.[1] ?? 0,
      name.length,
      0,
    ];
    const header = Buffer.from(`070701${fields.map((f) => f.toString(16).padStart(8, '0')).join('')}`);
    parts.push(header, name, pad4(header.length + name.length));
    if (e.data) parts.push(e.data, pad4(size));
  });
  return Buffer.concat(parts);
}

function readFileSyncSafe(path: string): string {
  try {
    return readFileSync(path, 'latin1');
  } catch {
    return '';
  }
}

/** Poll `done` every 100 ms; fail if `exited` settles first or after `timeoutMs`. */
async function until(done: () => boolean, exited: Promise<string>, timeoutMs: number, what: string) {
  let exitMessage: string | undefined;
  void exited.then((m) => {
    exitMessage = m;
  });
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (exitMessage !== undefined) throw new Error(`waiting for ${what}: ${exitMessage}`);
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function killChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await gone;
  clearTimeout(timer);
}

/** The serial console so far (for failure messages). */
export async function readSerial(guest: QemuGuest): Promise<string> {
  return readFile(guest.serialLog, 'latin1').catch(() => '');
}
