/**
 * The digest of a whole image (a replicated file or its replica): SHA-256 over its bytes, truncated to
 * 16 bytes, as hex. Both ends compute it the same way (the sender at a capture, the receiver after
 * applying an epoch), so "the replica equals the source at epoch N" is one string comparison.
 *
 * `ImageDigest` is pure (bytes in, digest out); `digestFile` reads a file in blocks.
 */
import { createHash, type Hash } from 'node:crypto';
import { open } from 'node:fs/promises';

/** Hex characters of an image digest (16 bytes). */
export const IMAGE_DIGEST_HEX = 32;

/** Incremental image digest: feed the image's bytes in order, then `hex()`. */
export class ImageDigest {
  private readonly hash: Hash = createHash('sha256');

  /** Add the next bytes of the image. */
  update(bytes: Uint8Array): this {
    this.hash.update(bytes);
    return this;
  }

  /** The digest of everything added (the object cannot be reused). */
  hex(): string {
    return this.hash.digest('hex').slice(0, IMAGE_DIGEST_HEX);
  }
}

/** The image digest of a file's whole content, read in 8 MiB blocks. */
export async function digestFile(path: string): Promise<string> {
  const d = new ImageDigest();
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(8 * 2 ** 20);
    for (let at = 0; ; ) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, at);
      if (bytesRead === 0) break;
      d.update(buf.subarray(0, bytesRead));
      at += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return d.hex();
}
