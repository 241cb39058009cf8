import { randomBytes } from 'node:crypto';
import {
  NotFoundError,
  type OperationContext,
  type SnapshotRecord,
  type SnapshotVerification,
} from '@novacron/core';
import { HostOps, type OpOptions } from './hostOps.js';
import { assertSnapshotId, BACKUP_DISK, DATA_FILE, parentBacking, snapshotDir } from './layout.js';
import { serializeMeta, toRecord, type BackupMeta } from './meta.js';
import { formatNodeName } from './restoredDomain.js';
import { ACTIVE_STATES, progress, sig, type BackupStore } from './store.js';

/** The records in the backup folders: listing, verification results, and removal with merges. */
export class Catalog {
  constructor(private readonly s: BackupStore) {}

  async listSnapshots(fleet: string, ctx: OperationContext = {}): Promise<readonly SnapshotRecord[]> {
    const perHost = await Promise.all([...this.s.p.hosts.values()].map((h) => this.s.metasOn(h, '*/*', ctx, true)));
    const out: SnapshotRecord[] = [];
    for (const { meta } of perHost.flat()) if (meta.fleet === fleet) out.push(toRecord(this.s.p.name, meta));
    return out.sort((a, b) => a.vm.localeCompare(b.vm) || a.takenAt.localeCompare(b.takenAt) || a.id.localeCompare(b.id));
  }

  async recordVerification(id: string, verification: SnapshotVerification, ctx: OperationContext = {}): Promise<SnapshotRecord> {
    const found = await this.s.find(id, 'recordVerification', ctx);
    if (!found) throw new NotFoundError(`snapshot "${id}" does not exist`, { context: { provider: this.s.p.name, operation: 'recordVerification' } });
    const updated: BackupMeta = { ...found.meta, verified: verification };
    await this.s.writeMeta(new HostOps(this.s.p.virshFor(found.host.name)), found.folder, updated, { ...sig(ctx), vm: found.meta.vm, operation: 'recordVerification' });
    return toRecord(this.s.p.name, updated);
  }

  /**
   * Merges a backup into each complete child before removing it: the child is rebased (a
   * copy of it, renamed over it when done) onto the deleted one's parent, or flattened into a
   * full when that was a full, and its record updated; only then does the folder go. A crash
   * in between leaves both restorable. Its checkpoint goes too (libvirt merges its bitmap into
   * the previous checkpoint, so later incrementals miss nothing).
   *
   * Incomplete children are left as they are, as core's `mergeTargets` leaves them: such a
   * backup is never restored or built on, may hold no data at all (one that failed at
   * `backup-begin` has no vda.qcow2), and is redone from scratch or removed (pruning removes
   * incomplete records, its own deletion just removes its folder); its record keeps naming
   * the deleted parent.
   */
  async deleteSnapshot(id: string, ctx: OperationContext = {}): Promise<void> {
    const context = { provider: this.s.p.name, operation: 'deleteSnapshot' };
    assertSnapshotId(id, context);
    const found = await this.s.find(id, 'deleteSnapshot', ctx);
    if (!found) return;
    const { meta, host, folder } = found;
    const ops = new HostOps(this.s.p.virshFor(host.name));
    const opts: OpOptions = { ...sig(ctx), vm: meta.vm, operation: 'deleteSnapshot' };
    if (meta.kind === 'disk') {
      await this.#dropInternalSnapshot(meta, ctx);
    } else {
      const siblings = await this.s.metasOn(host, `${meta.vm}/*`, ctx);
      const children = siblings.map((s) => s.meta).filter((m) => m.parent === id && m.state === 'complete');
      for (const child of children) {
        progress(ctx, 'merge', undefined, `merging ${id} into ${child.id}`, 'deleteSnapshot');
        const childFolder = snapshotDir(this.s.dir(host.name), meta.vm, child.id);
        const work = `.${DATA_FILE}.rebase`;
        const onto = meta.kind === 'incremental' && meta.parent !== undefined ? `-b ${ops.q(parentBacking(meta.parent))} -F qcow2` : `-b ''`;
        await ops.run(
          `set -e; cd ${ops.q(childFolder)}; cp --reflink=auto ${DATA_FILE} ${work}; qemu-img rebase -f qcow2 ${onto} ${work}; sync ${work} 2>/dev/null || true; mv -f ${work} ${DATA_FILE}`,
          `merging ${id} into ${child.id}`,
          opts,
        );
        const { parent: _old, ...rest } = child;
        const merged: BackupMeta = meta.kind === 'incremental' && meta.parent !== undefined ? { ...rest, parent: meta.parent } : { ...rest, kind: 'full' };
        const sized = { ...merged, sizeBytes: await this.s.folderBytes(ops, childFolder, serializeMeta(merged).length + 64, opts) };
        await this.s.writeMeta(ops, childFolder, sized, opts);
      }
      if (meta.checkpoint) await this.#dropCheckpoint(meta, ctx);
    }
    // Renamed first (listing skips dot folders), then removed: never half a backup on view.
    const gone = `${this.s.dir(host.name)}/${meta.vm}/.deleting-${id}-${randomBytes(4).toString('hex')}`;
    await ops.run(`if [ -d ${ops.q(folder)} ]; then mv ${ops.q(folder)} ${ops.q(gone)}; rm -rf ${ops.q(gone)}; fi; rmdir ${ops.q(`${this.s.dir(host.name)}/${meta.vm}`)} 2>/dev/null || true`, `removing ${folder}`, opts);
  }

  async #dropCheckpoint(meta: BackupMeta, ctx: OperationContext): Promise<void> {
    const found = await this.s.p.locate({ name: meta.vm, fleet: meta.fleet, host: meta.sourceHost }, 'deleteSnapshot', ctx).catch(() => undefined);
    // libvirt can delete a checkpoint only while the domain runs; otherwise the next backup's clean-up does it.
    if (!found || found.view.info.uuid !== meta.domainUuid || !ACTIVE_STATES.has(found.view.state)) return;
    const r = await found.virsh.tryRun(['checkpoint-delete', meta.vm, meta.checkpoint!], { ...sig(ctx), vm: meta.vm, operation: 'deleteSnapshot' });
    if (r.error && !/checkpoint not found|no domain checkpoint/i.test(r.stderr)) throw r.error;
  }

  async #dropInternalSnapshot(meta: BackupMeta, ctx: OperationContext): Promise<void> {
    const found = await this.s.p.locate({ name: meta.vm, fleet: meta.fleet, host: meta.host }, 'deleteSnapshot', ctx);
    if (!found || found.view.info.uuid !== meta.domainUuid || !meta.diskPath) return;
    const opts = { ...sig(ctx), vm: meta.vm, operation: 'deleteSnapshot' };
    if (ACTIVE_STATES.has(found.view.state)) {
      const live = await found.virsh.run(['dumpxml', meta.vm], opts);
      const node = formatNodeName(live, BACKUP_DISK);
      if (!node) return;
      const r = await found.virsh.tryRun(['qemu-monitor-command', meta.vm, JSON.stringify({ execute: 'blockdev-snapshot-delete-internal-sync', arguments: { device: node, name: meta.id } })], opts);
      if (r.error && !/not found|does not exist|Can't find/i.test(r.stderr)) throw r.error;
    } else {
      const ops = new HostOps(found.virsh);
      await ops.run(`if qemu-img snapshot -l ${ops.q(meta.diskPath)} | awk 'NR>2{print $2}' | grep -qxF -- ${ops.q(meta.id)}; then qemu-img snapshot -d ${ops.q(meta.id)} ${ops.q(meta.diskPath)}; fi`, `deleting snapshot ${meta.id}`, opts);
    }
  }
}
