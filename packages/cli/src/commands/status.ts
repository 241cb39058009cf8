import { naturalCompare, observe, plan, type Host, type VmRecord } from '@novacron/core';
import { loadFleet, withProviders, writeJson, type GlobalOptions, type Io } from '../context.js';
import { EXIT } from '../exit.js';
import { formatMiB, table } from '../output/table.js';

/** `novacron status`: the fleet's VMs and the hosts they run on, as the providers report them. */
export async function statusCommand(io: Io, options: GlobalOptions): Promise<number> {
  const fleet = await loadFleet(io, options);
  const observed = await withProviders(io, options, fleet, (providers) => observe(fleet, providers));
  const pending = plan(fleet, observed);
  const vms = [...observed.vms].sort((a, b) => naturalCompare(a.name, b.name));
  const counts = new Map<string, number>();
  for (const vm of vms) counts.set(vm.host, (counts.get(vm.host) ?? 0) + 1);
  const hosts = observed.hosts.filter((h) => counts.has(h.id) || observed.hosts.length <= 20);

  if (options.json) {
    writeJson(io, {
      fleet: fleet.name,
      inSync: pending.steps.length === 0 && pending.unplaced.length === 0,
      pendingChanges: pending.steps.length,
      vms: vms.map((vm) => ({ ...vm })),
      hosts: hosts.map((h) => ({ ...h, fleetVms: counts.get(h.id) ?? 0 })),
    });
    return EXIT.ok;
  }
  io.stdout.write(`Fleet ${fleet.name}: ${vms.length} VM(s) on ${counts.size} host(s); ${pending.steps.length === 0 ? 'in sync with the spec' : `${pending.steps.length} change(s) pending (run plan)`}. Cost $${pending.costPerHour.toFixed(2)}/h.\n\n`);
  io.stdout.write(`${vmTable(vms)}\n\n${hostTable(hosts, counts)}\n`);
  return EXIT.ok;
}

function vmTable(vms: readonly VmRecord[]): string {
  const shown = vms.slice(0, 200);
  const out = table(
    ['VM', 'GROUP', 'STATE', 'HOST', 'CPU', 'MEMORY', 'DISK', 'ADDRESS'],
    shown.map((vm) => [vm.name, vm.group, vm.state, vm.host, vm.resources.cpu, formatMiB(vm.resources.memoryMiB), `${vm.resources.diskGiB}GiB`, vm.addresses.map((a) => `${a.address} (${a.source})`).join(', ') || '-']),
  );
  return vms.length > shown.length ? `${out}\n… and ${vms.length - shown.length} more (use --json)` : out;
}

function hostTable(hosts: readonly Host[], counts: ReadonlyMap<string, number>): string {
  const shown = hosts.slice(0, 100);
  const out = table(
    ['HOST', 'ZONE', 'STATE', 'CPU USED', 'MEMORY USED', 'FLEET VMS', 'RUNNING', '$/H'],
    shown.map((h) => [
      h.id,
      h.zone,
      h.state,
      h.instanceTypes ? 'elastic' : `${h.allocated.cpu}/${h.capacity.cpu * h.overcommit.cpu}`,
      h.instanceTypes ? 'elastic' : `${formatMiB(h.allocated.memoryMiB)}/${formatMiB(h.capacity.memoryMiB * h.overcommit.memory)}`,
      counts.get(h.id) ?? 0,
      // Every VM running on the host, the fleet's or not; '-' where the provider does not say.
      h.runningVms ?? '-',
      h.pricePerHour.toFixed(2),
    ]),
  );
  return hosts.length > shown.length ? `${out}\n… and ${hosts.length - shown.length} more hosts` : out;
}
