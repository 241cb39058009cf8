import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { createGzip, type Gzip } from 'node:zlib';

const BLOCK = 512;
/** The largest size the 11 octal digits of a ustar header hold; beyond it GNU tar writes base-256. */
const OCTAL_LIMIT = 8 * 1024 ** 3 - 1;

/**
 * The 512-byte GNU tar header of one regular file. Compute Engine imports a raw disk only
 * as a gzipped GNU-format tar holding one file named `disk.raw`; disks are often larger
 * than ustar's 8 GiB, so sizes above it use GNU's base-256 encoding.
 */
export function tarHeader(name: string, size: number, mtimeSec: number): Buffer {
  const h = Buffer.alloc(BLOCK, 0);
  h.write(name, 0, 100, 'utf8');
  h.write('0000644\0', 100, 8, 'ascii');
  h.write('0000000\0', 108, 8, 'ascii');
  h.write('0000000\0', 116, 8, 'ascii');
  if (size <= OCTAL_LIMIT) {
    h.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 12, 'ascii');
  } else {
    h[124] = 0x80;
    let rest = BigInt(size);
    for (let i = 135; i > 124; i--) {
      h[i] = Number(rest & 0xffn);
      rest >>= 8n;
    }
  }
  h.write(`${Math.floor(mtimeSec).toString(8).padStart(11, '0')}\0`, 136, 12, 'ascii');
  h.write('        ', 148, 8, 'ascii');
  h.write('0', 156, 1, 'ascii');
  // GNU magic and version ("ustar  \0"), as `tar --format=oldgnu` writes it.
  h.write('ustar  \0', 257, 8, 'ascii');
  h.write('root', 265, 32, 'ascii');
  h.write('root', 297, 32, 'ascii');
  let sum = 0;
  for (const byte of h) sum += byte;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
  return h;
}

async function* tarOf(rawPath: string, size: number, mtimeSec: number): AsyncGenerator<Buffer> {
  yield tarHeader('disk.raw', size, mtimeSec);
  let written = 0;
  for await (const chunk of createReadStream(rawPath, { highWaterMark: 1024 * 1024 })) {
    written += (chunk as Buffer).length;
    yield chunk as Buffer;
  }
  if (written !== size) throw new Error(`${rawPath} changed while it was packed (${written} bytes, expected ${size})`);
  const pad = (BLOCK - (size % BLOCK)) % BLOCK;
  if (pad > 0) yield Buffer.alloc(pad, 0);
  yield Buffer.alloc(2 * BLOCK, 0);
}

/** `disk.raw` packed as Compute Engine wants it, as a stream: nothing is written to disk. */
export function rawDiskTarball(rawPath: string, size: number, mtimeSec = 0): Gzip {
  const gzip = createGzip({ level: 6 });
  const tar = Readable.from(tarOf(rawPath, size, mtimeSec));
  tar.on('error', (error) => gzip.destroy(error));
  return tar.pipe(gzip);
}
