import { ConflictError } from '../errors/errors.js';
import type { VmRecord } from '../model/records.js';
import type { VmRef } from './Provider.js';

/**
 * The guard every provider runs before changing a VM: the VM must carry this fleet's
 * ownership. Other VMs on the same hosts are never touched.
 */
export function assertOwned(record: Pick<VmRecord, 'name' | 'fleet'> | undefined, ref: VmRef, provider: string): void {
  if (record && record.fleet !== ref.fleet) {
    throw new ConflictError(`VM "${ref.name}" is not owned by fleet "${ref.fleet}"${record.fleet ? ` (it belongs to "${record.fleet}")` : ''}; refusing to change it`, {
      context: { provider, vm: ref.name },
      hint: 'rename the group or fleet so the names do not collide, or adopt the VM',
    });
  }
}
