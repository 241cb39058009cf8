import { randomBytes } from 'node:crypto';
import { InvalidInputError, type NovaCronError } from '@novacron/core';
import type { Virsh } from '../virsh/Virsh.js';
import { virshError } from '../virsh/virshErrors.js';
import {
  assembleManifest,
  BLOCK_BYTES,
  blocksToRead,
  classifyBlocks,
  hashRunsScript,
  parseChunkHashes,
  parseImageMap,
  runsOf,
  type BlockClasses,
} from './blockHashes.js';

export interface OpOptions {
  readonly signal?: AbortSignal;
  readonly vm?: string;
  readonly operation?: string;
  readonly stdin?: string | Buffer;
  readonly timeoutMs?: number;
}

/**
 * Files and images on one host, through the virsh layer's transport: fixed scripts whose only
 * inputs are quoted paths and names. Failures become the same typed errors virsh failures do
 * (a full disk is CapacityExceeded, a lost connection Unreachable), naming host and VM.
 */
export class HostOps {
  constructor(readonly virsh: Virsh) {}

  get host(): string {
    return this.virsh.host;
  }

  q(s: string): string {
    return this.virsh.quote(s);
  }

  /** Runs a script; its stdout, or the typed error for its stderr. */
  async run(script: string, what: string, options: OpOptions = {}): Promise<string> {
    const result = await this.virsh.script(script, {
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.stdin !== undefined ? { stdin: options.stdin } : {}),
      timeoutMs: options.timeoutMs ?? 3_600_000,
    });
    if (result.code !== 0) throw this.error(result.stderr, what, options, result.code);
    return result.stdout;
  }

  error(stderr: string, what: string, options: OpOptions, code: number | null): NovaCronError {
    return virshError(stderr, what, this.virsh.context({ ...(options.vm ? { vm: options.vm } : {}), ...(options.operation ? { operation: options.operation } : {}) }), code);
  }

  /**
   * Runs a script whose parts print `\n<marker> <name>\n` after themselves; the parts by name.
   * `mark(name)` quotes the name; `mark(word, true)` takes a shell word as it is (`"meta:$d"`).
   */
  async sections(build: (mark: (name: string, raw?: boolean) => string) => string, what: string, options: OpOptions = {}): Promise<Map<string, string>> {
    const marker = `@@novacron-${randomBytes(6).toString('hex')}`;
    const stdout = await this.run(build((name, raw) => `printf '\\n%s %s\\n' ${marker} ${raw ? name : this.q(name)}`), what, options);
    const out = new Map<string, string>();
    let from = 0;
    for (const m of stdout.matchAll(new RegExp(`\\n${marker} (\\S+)\\n`, 'g'))) {
      out.set(m[1]!, stdout.slice(from, m.index));
      from = m.index + m[0].length;
    }
    return out;
  }

  /** A file's text, or undefined when it does not exist. */
  async readText(path: string, options: OpOptions = {}): Promise<string | undefined> {
    const parts = await this.sections((mark) => `if [ -f ${this.q(path)} ]; then cat ${this.q(path)}; ${mark('found')}; fi`, `reading ${path}`, options);
    return parts.get('found');
  }

  /**
   * Script lines that write a small text file whole (a here-document into a temporary file,
   * flushed, renamed over the old one), to share a round trip with other work. Large content
   * (a block manifest) goes through `writeAtomic`'s stdin instead: a command line is limited.
   */
  writeScript(path: string, content: string): string {
    if (Buffer.byteLength(content) > 32 * 1024) throw new RangeError(`${path}: ${Buffer.byteLength(content)} bytes are too many for a command line`);
    const dir = path.slice(0, path.lastIndexOf('/'));
    const tmp = `${dir}/.${path.slice(path.lastIndexOf('/') + 1)}.tmp`;
    const delim = `NOVACRON_EOF_${randomBytes(6).toString('hex')}`;
    // The here-document ends its text with a newline of its own.
    const body = content.endsWith('\n') ? content.slice(0, -1) : content;
    return `mkdir -p ${this.q(dir)} && t=${this.q(tmp)}.$$ && cat > "$t" <<'${delim}'\n${body}\n${delim}\nsync "$t" 2>/dev/null || true; mv -f "$t" ${this.q(path)}`;
  }

  /** Writes a file whole: into a temporary file, flushed, then renamed over the old one. */
  async writeAtomic(path: string, content: string | Buffer, options: OpOptions = {}): Promise<void> {
    const dir = path.slice(0, path.lastIndexOf('/'));
    const tmp = `${dir}/.${path.slice(path.lastIndexOf('/') + 1)}.tmp`;
    await this.run(`set -e; mkdir -p ${this.q(dir)}; t=${this.q(tmp)}.$$; cat > "$t"; sync "$t" 2>/dev/null || true; mv -f "$t" ${this.q(path)}`, `writing ${path}`, { ...options, stdin: content });
  }

  /** The directory of a directory pool (where restores and imports write their files). */
  async poolDir(pool: string, options: OpOptions = {}): Promise<string> {
    const path = (await this.run(`x=$(${this.virsh.commandLine(['pool-dumpxml', pool])} </dev/null) && printf '%s\\n' "$x" | sed -n 's:.*<path>\\(.*\\)</path>.*:\\1:p' | head -n 1`, `reading pool ${pool}`, options)).trim();
    if (!path.startsWith('/')) {
      throw new InvalidInputError(`${this.host}: pool ${pool} is not a directory pool`, { context: this.virsh.context(options), hint: 'restores and image imports write files into the pool: use a directory pool' });
    }
    return path;
  }

  /** Virtual size and allocation map of an image (through its backing chain). */
  async imageMap(path: string, format: 'qcow2' | 'raw', options: OpOptions = {}): Promise<{ virtualSize: number; info: Record<string, unknown>; extents: ReturnType<typeof parseImageMap> }> {
    const f = `-U -f ${format} ${this.q(path)}`;
    const parts = await this.sections((mark) => `set -e; qemu-img info --output=json ${f}; ${mark('info')}; qemu-img map --output=json ${f}; ${mark('map')}`, `reading the map of ${path}`, options);
    const info = JSON.parse(parts.get('info') ?? '{}') as Record<string, unknown>;
    return { virtualSize: Number(info['virtual-size']), info, extents: parseImageMap(parts.get('map') ?? '[]') };
  }

  /** sha256 of the given blocks of an image, read through qemu-img. */
  async hashBlocks(path: string, format: 'qcow2' | 'raw', blocks: readonly number[], virtualSize: number, workDir: string, options: OpOptions = {}): Promise<Map<number, string>> {
    if (blocks.length === 0) return new Map();
    const script = hashRunsScript(path, format, runsOf(blocks), virtualSize, workDir);
    const hashed = parseChunkHashes(await this.run(`mkdir -p ${this.q(workDir)}\n${script}`, `hashing ${path}`, options));
    const missing = blocks.find((b) => !hashed.has(b));
    if (missing !== undefined) throw this.error(`error: block ${missing} of ${path} was not hashed`, `hashing ${path}`, options, 1);
    return hashed;
  }

  /**
   * The block manifest of an image as the guest would read it: every block (`all`), or only
   * the ones it holds itself on top of `base` (an incremental on its parent's manifest).
   * `limitBytes` hashes only the first bytes (a restored image grown to the VM's size).
   */
  async manifest(path: string, format: 'qcow2' | 'raw', workDir: string, mode: 'all' | 'top', base: readonly string[] | undefined, options: OpOptions & { limitBytes?: number } = {}): Promise<{ hashes: string[]; virtualSize: number; classes: BlockClasses; read: number }> {
    const map = await this.imageMap(path, format, options);
    const size = options.limitBytes !== undefined ? Math.min(options.limitBytes, map.virtualSize) : map.virtualSize;
    const classes = classifyBlocks(map.extents, size, BLOCK_BYTES);
    const read = blocksToRead(classes, mode);
    const hashed = await this.hashBlocks(path, format, read, size, workDir, options);
    return { hashes: assembleManifest(classes, size, hashed, mode, base), virtualSize: size, classes, read: read.length };
  }
}
