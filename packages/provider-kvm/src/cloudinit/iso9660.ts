/**
 * A minimal ISO 9660 image writer with Joliet names: one root directory of small files,
 * which is all a cloud-init NoCloud seed is (`user-data`, `meta-data`, `network-config`
 * on a volume labelled `cidata`). Built client-side so hosts need no genisoimage, xorriso
 * or cloud-localds, and byte-for-byte deterministic for a given input and date.
 *
 * Layout (2048-byte sectors): 0–15 system area, 16 primary volume descriptor, 17 Joliet
 * supplementary descriptor, 18 terminator, 19–22 path tables (L/M × primary/Joliet), 23
 * primary root directory, 24 Joliet root directory, 25… file data. The primary tree carries
 * upper-case d-character names (`USER_DATA.;1`) for readers without Joliet; Linux, which
 * cloud-init runs on, reads the Joliet tree and sees the real names.
 */

const SECTOR = 2048;

export interface IsoFile {
  /** The real name (Joliet): up to 64 characters, no slashes. */
  readonly name: string;
  readonly data: Buffer;
}

export interface IsoOptions {
  /** Volume label, at most 16 characters in Joliet (`cidata`). */
  readonly volumeId: string;
  readonly files: readonly IsoFile[];
  /** Recorded as creation and modification time: pass a fixed date for reproducible images. */
  readonly date: Date;
}

export function buildIso9660(options: IsoOptions): Buffer {
  const { volumeId, date } = options;
  if (volumeId.length === 0 || volumeId.length > 16) throw new RangeError('ISO volume id must have 1 to 16 characters');
  const files = [...options.files].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const seen = new Set<string>();
  for (const f of files) {
    if (!/^[^/\0]{1,64}$/.test(f.name)) throw new RangeError(`bad ISO file name ${JSON.stringify(f.name)}`);
    const primary = primaryName(f.name);
    if (seen.has(primary)) throw new RangeError(`two files map to the ISO name ${primary}`);
    seen.add(primary);
  }

  const PVD = 16, SVD = 17, TERM = 18, L_PRI = 19, M_PRI = 20, L_JOL = 21, M_JOL = 22, ROOT_PRI = 23, ROOT_JOL = 24;
  let next = 25;
  const extents = files.map((f) => {
    const at = next;
    next += Math.max(1, Math.ceil(f.data.length / SECTOR));
    return at;
  });
  const totalSectors = next;
  const image = Buffer.alloc(totalSectors * SECTOR);

  // Root directories: ".", "..", then the files in name order.
  const primaryRoot = directory(ROOT_PRI, files.map((f, i) => ({ id: Buffer.from(primaryName(f.name), 'ascii'), extent: extents[i]!, size: f.data.length })), date);
  const jolietRoot = directory(ROOT_JOL, files.map((f, i) => ({ id: ucs2(f.name), extent: extents[i]!, size: f.data.length })), date);
  if (primaryRoot.length > SECTOR || jolietRoot.length > SECTOR) throw new RangeError('too many files for a one-sector root directory');
  primaryRoot.copy(image, ROOT_PRI * SECTOR);
  jolietRoot.copy(image, ROOT_JOL * SECTOR);

  for (const [l, m, root] of [[L_PRI, M_PRI, ROOT_PRI], [L_JOL, M_JOL, ROOT_JOL]] as const) {
    pathTable(root, 'le').copy(image, l * SECTOR);
    pathTable(root, 'be').copy(image, m * SECTOR);
  }

  volumeDescriptor({ type: 1, volumeId, totalSectors, pathTables: [L_PRI, M_PRI], root: ROOT_PRI, date, joliet: false }).copy(image, PVD * SECTOR);
  volumeDescriptor({ type: 2, volumeId, totalSectors, pathTables: [L_JOL, M_JOL], root: ROOT_JOL, date, joliet: true }).copy(image, SVD * SECTOR);
  const term = Buffer.alloc(SECTOR);
  term[0] = 255;
  term.write('CD001', 1, 'ascii');
  term[6] = 1;
  term.copy(image, TERM * SECTOR);

  files.forEach((f, i) => f.data.copy(image, extents[i]! * SECTOR));
  return image;
}

/** `user-data` → `USER_DATA.;1`: ISO 9660 d-characters, as genisoimage would write them. */
export function primaryName(name: string): string {
  const upper = name.toUpperCase().replace(/[^A-Z0-9_.]/g, '_');
  const dot = upper.lastIndexOf('.');
  const base = (dot < 0 ? upper : upper.slice(0, dot)).replaceAll('.', '_').slice(0, 24);
  const ext = dot < 0 ? '' : upper.slice(dot + 1).slice(0, 6);
  return `${base}.${ext};1`;
}

function ucs2(text: string): Buffer {
  const buf = Buffer.from(text, 'utf16le');
  buf.swap16(); // Joliet is UCS-2 big-endian
  return buf;
}

function both16(buf: Buffer, offset: number, value: number): void {
  buf.writeUInt16LE(value, offset);
  buf.writeUInt16BE(value, offset + 2);
}

function both32(buf: Buffer, offset: number, value: number): void {
  buf.writeUInt32LE(value, offset);
  buf.writeUInt32BE(value, offset + 4);
}

function dirDate(date: Date): Buffer {
  return Buffer.from([date.getUTCFullYear() - 1900, date.getUTCMonth() + 1, date.getUTCDate(), date.getUTCHours(), date.getUTCMinutes(), date.getUTCSeconds(), 0]);
}

function volDate(date: Date): Buffer {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  const text = `${p(date.getUTCFullYear(), 4)}${p(date.getUTCMonth() + 1)}${p(date.getUTCDate())}${p(date.getUTCHours())}${p(date.getUTCMinutes())}${p(date.getUTCSeconds())}00`;
  return Buffer.concat([Buffer.from(text, 'ascii'), Buffer.from([0])]);
}

function record(id: Buffer, extent: number, size: number, isDir: boolean, date: Date): Buffer {
  const length = 33 + id.length + (id.length % 2 === 0 ? 1 : 0);
  const r = Buffer.alloc(length);
  r[0] = length;
  both32(r, 2, extent);
  both32(r, 10, size);
  dirDate(date).copy(r, 18);
  r[25] = isDir ? 2 : 0;
  both16(r, 28, 1);
  r[32] = id.length;
  id.copy(r, 33);
  return r;
}

function directory(self: number, entries: readonly { id: Buffer; extent: number; size: number }[], date: Date): Buffer {
  return Buffer.concat([
    record(Buffer.from([0]), self, SECTOR, true, date),
    record(Buffer.from([1]), self, SECTOR, true, date),
    ...entries.map((e) => record(e.id, e.extent, e.size, false, date)),
  ]);
}

function pathTable(root: number, endian: 'le' | 'be'): Buffer {
  const t = Buffer.alloc(10);
  t[0] = 1;
  if (endian === 'le') {
    t.writeUInt32LE(root, 2);
    t.writeUInt16LE(1, 6);
  } else {
    t.writeUInt32BE(root, 2);
    t.writeUInt16BE(1, 6);
  }
  return t;
}

function volumeDescriptor(o: { type: 1 | 2; volumeId: string; totalSectors: number; pathTables: readonly [number, number]; root: number; date: Date; joliet: boolean }): Buffer {
  const d = Buffer.alloc(SECTOR);
  const text = (offset: number, width: number, value: string) => {
    if (o.joliet) {
      const chars = ucs2(value.slice(0, width / 2).padEnd(width / 2, ' '));
      chars.copy(d, offset);
    } else {
      d.write(value.toUpperCase().slice(0, width).padEnd(width, ' '), offset, 'ascii');
    }
  };
  d[0] = o.type;
  d.write('CD001', 1, 'ascii');
  d[6] = 1;
  text(8, 32, '');
  text(40, 32, o.volumeId);
  both32(d, 80, o.totalSectors);
  if (o.joliet) d.write('%/E', 88, 'ascii'); // UCS-2 level 3
  both16(d, 120, 1);
  both16(d, 124, 1);
  both16(d, 128, SECTOR);
  both32(d, 132, 10);
  d.writeUInt32LE(o.pathTables[0], 140);
  d.writeUInt32BE(o.pathTables[1], 148);
  record(Buffer.from([0]), o.root, SECTOR, true, o.date).copy(d, 156);
  text(190, 128, '');
  text(318, 128, '');
  text(446, 128, '');
  text(574, 128, 'NOVACRON');
  text(702, 36, '');
  text(739, 36, '');
  text(776, 36, '');
  volDate(o.date).copy(d, 813);
  volDate(o.date).copy(d, 830);
  Buffer.concat([Buffer.from('0'.repeat(16), 'ascii'), Buffer.from([0])]).copy(d, 847);
  Buffer.concat([Buffer.from('0'.repeat(16), 'ascii'), Buffer.from([0])]).copy(d, 864);
  d[881] = 1;
  return d;
}
