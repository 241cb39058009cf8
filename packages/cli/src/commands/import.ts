import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { InvalidInputError, naturalCompare, observe, vmName, type Host, type VmRecord } from '@novacron/core';
import { loadFleet, withProviders, type GlobalOptions, type Io } from '../context.js';
import { EXIT } from '../exit.js';

export interface ImportOptions extends GlobalOptions {
  readonly pulumi?: boolean;
  readonly cdktf?: boolean;
  readonly out?: string;
}

/**
 * `novacron import --pulumi|--cdktf`: prints the program that manages the fleet (typically
 * just adopted) from Pulumi or CDKTF: the fleet spec as written in the file, and what each
 * front door needs to take over the VMs that run already.
 */
export async function importCommand(io: Io, options: ImportOptions): Promise<number> {
  if (Boolean(options.pulumi) === Boolean(options.cdktf)) throw new InvalidInputError('say which program to print: --pulumi or --cdktf', { hint: 'novacron import --pulumi -f fleet.yaml' });
  const fleet = await loadFleet(io, options);
  const spec = parseYaml(readFileSync(resolve(io.cwd, options.file), 'utf8')) as Record<string, unknown>;
  const observed = await withProviders(io, options, fleet, (providers) => observe(fleet, providers));
  const vms = [...observed.vms].sort((a, b) => naturalCompare(a.name, b.name));
  const renamed = vms.filter((vm) => vm.name !== vmName(fleet.name, vm.group, vm.index));
  if (renamed.length > 0) {
    io.stderr.write(
      `warning: ${renamed.length} VM(s) keep names that are not their slot names (${renamed.slice(0, 5).map((v) => `${v.name} = ${vmName(fleet.name, v.group, v.index)}`).join(', ')}${renamed.length > 5 ? ', …' : ''}); ` +
        `Pulumi and CDKTF name VMs by slot and would make new ones: rename them while stopped (virsh domrename) first\n`,
    );
  }
  const code = options.pulumi ? pulumiProgram(fleet.name, spec, vms) : cdktfProgram(fleet.name, spec, vms, inventoryWithout(observed.hosts, vms));
  if (options.out) writeFileSync(resolve(io.cwd, options.out), code);
  else io.stdout.write(code);
  return EXIT.ok;
}

/** The hosts as placement must see them for a synth: without this fleet's own VMs in `allocated` (CDKTF counts them itself). */
function inventoryWithout(hosts: readonly Host[], vms: readonly VmRecord[]): Host[] {
  return hosts.map((h) => {
    const mine = vms.filter((v) => v.host === h.id);
    const less = (k: 'cpu' | 'memoryMiB' | 'diskGiB' | 'gpu') => Math.max(0, h.allocated[k] - mine.reduce((sum, v) => sum + v.resources[k], 0));
    return { ...h, allocated: { cpu: less('cpu'), memoryMiB: less('memoryMiB'), diskGiB: less('diskGiB'), gpu: less('gpu') } };
  });
}

const json = (value: unknown, indent: string) => JSON.stringify(value, null, 2).replace(/\n/g, `\n${indent}`);

function pulumiProgram(name: string, spec: Record<string, unknown>, vms: readonly VmRecord[]): string {
  return `/**
 * The NovaCron fleet "${name}" as a Pulumi program, printed by \`novacron import --pulumi\`.
 *
 * ${vms.length} VM(s) run already and carry the fleet's ownership (${vms.map((v) => v.name).slice(0, 8).join(', ')}${vms.length > 8 ? ', …' : ''}).
 * Each Vm resource's create is idempotent on the VM's name: the first \`pulumi up\` finds
 * each of them as it is and records it in the stack, changing nothing; later changes to
 * the spec go through the same change classes as \`novacron plan\`.
 *
 * Manage the fleet from here from now on, not also with \`novacron apply\`.
 */
import { VmFleet } from '@novacron/pulumi';

const fleet = new VmFleet(${JSON.stringify(name)}, {
  spec: ${json(spec, '  ')},
});

/** Each VM: provider, host, zone, addresses, state. */
export const vms = fleet.vms;
/** Where each VM is and why. */
export const placement = fleet.placement;
`;
}

function cdktfProgram(name: string, spec: Record<string, unknown>, vms: readonly VmRecord[], inventory: readonly Host[]): string {
  const imports = vms.map((vm) => `  ${JSON.stringify(vm.name)}: ${JSON.stringify(vm.id)}, // ${vm.host}`).join('\n');
  return `/**
 * The NovaCron fleet "${name}" as a CDKTF stack, printed by \`novacron import --cdktf\`.
 *
 * ${vms.length} VM(s) run already. Each VM's main resource (libvirt_domain, aws_instance,
 * google_compute_instance) is imported by its id instead of created: \`cdktf plan\` shows
 * the imports, and \`cdktf deploy\` adopts them into Terraform's state. The inventory is the
 * hosts as they are now, without this fleet's VMs in their allocation; check that the
 * stack output \`placement\` puts every VM on the host it runs on (pin it with placement
 * rules if not), or Terraform would move it.
 */
import { App, TerraformStack } from 'cdktf';
import type { Construct } from 'constructs';
import { VmFleet, type FleetSpecInput, type Host } from '@novacron/cdktf';

export const spec: FleetSpecInput = ${json(spec, '')};

export const inventory: Host[] = ${json(inventory, '')};

/** VM name → the id its provider knows it by (domain UUID, instance id). */
export const running: Record<string, string> = {
${imports}
};

export class FleetStack extends TerraformStack {
  readonly fleet: VmFleet;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    this.fleet = new VmFleet(this, ${JSON.stringify(name)}, { spec, inventory });
    for (const [vm, id] of Object.entries(running)) this.fleet.vms[vm]?.resource.importFrom(id);
  }
}

const app = new App();
new FleetStack(app, ${JSON.stringify(name)});
app.synth();
`;
}
