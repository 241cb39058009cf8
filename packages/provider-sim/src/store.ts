import { closeSync, existsSync, ftruncateSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync, writeFileSync, constants } from 'node:fs';
import { join } from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import { ConflictError } from '@novacron/core';

/** One change to the world, replayable: each entry puts or removes a whole record. */
export type JournalEntry =
  | { readonly seq: number; readonly op: 'put'; readonly table: string; readonly key: string; readonly value: unknown }
  | { readonly seq: number; readonly op: 'del'; readonly table: string; readonly key: string };

export interface StoredWorld {
  readonly seq: number;
  readonly tables: Record<string, Record<string, unknown>>;
}

/**
 * The simulated world on disk: a snapshot written atomically (temp file and rename) plus a
 * journal of changes appended one line each. A crash can tear at most the last journal
 * line, which replay drops, so the world is never corrupt and loses at most the change in
 * flight. A lock file (with the owner's pid) keeps two processes from sharing a world.
 */
export class WorldStore {
  readonly #snapshotPath: string;
  readonly #journalPath: string;
  readonly #lockPath: string;
  #journalFd: number | undefined;
  #journalLines = 0;

  constructor(readonly dir: string, readonly name: string) {
    this.#snapshotPath = join(dir, `${name}.world.json`);
    this.#journalPath = join(dir, `${name}.journal.ndjson`);
    this.#lockPath = join(dir, `${name}.lock`);
  }

  /** Takes the lock and loads the world (snapshot, then journal entries after it). */
  open(): StoredWorld {
    mkdirSync(this.dir, { recursive: true });
    this.#lock();
    const snapshot: StoredWorld = existsSync(this.#snapshotPath)
      ? (JSON.parse(readFileSync(this.#snapshotPath, 'utf8')) as StoredWorld)
      : { seq: 0, tables: {} };
    let seq = snapshot.seq;
    const tables = snapshot.tables;
    if (existsSync(this.#journalPath)) {
      const text = readFileSync(this.#journalPath, 'utf8');
      let offset = 0;
      for (const line of text.split('\n')) {
        if (line === '') break;
        let entry: JournalEntry;
        try {
          entry = JSON.parse(line) as JournalEntry;
        } catch {
          break; // a torn last line: everything after it is dropped
        }
        offset += Buffer.byteLength(line) + 1;
        this.#journalLines++;
        if (entry.seq <= seq) continue;
        seq = entry.seq;
        const table = (tables[entry.table] ??= {});
        if (entry.op === 'put') table[entry.key] = entry.value;
        else delete table[entry.key];
      }
      const fd = openSync(this.#journalPath, 'r+');
      ftruncateSync(fd, offset);
      closeSync(fd);
    }
    this.#journalFd = openSync(this.#journalPath, 'a');
    return { seq, tables };
  }

  append(entry: JournalEntry): void {
    if (this.#journalFd === undefined) throw new Error('world store is not open');
    writeSync(this.#journalFd, `${JSON.stringify(entry)}\n`);
    this.#journalLines++;
  }

  get journalLines(): number {
    return this.#journalLines;
  }

  /** Writes the whole world as the new snapshot, then empties the journal. */
  compact(world: StoredWorld): void {
    writeFileAtomic.sync(this.#snapshotPath, JSON.stringify(world));
    if (this.#journalFd !== undefined) {
      ftruncateSync(this.#journalFd, 0);
      this.#journalLines = 0;
    }
  }

  close(world: StoredWorld): void {
    if (this.#journalFd === undefined) return;
    if (this.#journalLines > 0) this.compact(world);
    closeSync(this.#journalFd);
    this.#journalFd = undefined;
    try {
      unlinkSync(this.#lockPath);
    } catch {
      // already gone
    }
  }

  /** Lets go of the files as a killed process would: no compaction, the journal is all that is left. */
  abandon(): void {
    if (this.#journalFd !== undefined) closeSync(this.#journalFd);
    this.#journalFd = undefined;
    try {
      unlinkSync(this.#lockPath);
    } catch {
      // already gone
    }
  }

  #lock(): void {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(this.#lockPath, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY);
        writeSync(fd, String(process.pid));
        closeSync(fd);
        return;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        const owner = Number(readFileSync(this.#lockPath, 'utf8'));
        if (owner && owner !== process.pid && isAlive(owner)) {
          throw new ConflictError(`the simulated datacenter "${this.name}" in ${this.dir} is in use by process ${owner}`, {
            hint: 'wait for that process to finish, or use another NOVACRON_STATE_DIR',
          });
        }
        if (owner === process.pid) {
          throw new ConflictError(`the simulated datacenter "${this.name}" in ${this.dir} is already open in this process`, {
            hint: 'share one provider instance, or use another state directory',
          });
        }
        writeFileSync(this.#lockPath, ''); // stale: its owner is gone
        unlinkSync(this.#lockPath);
      }
    }
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
