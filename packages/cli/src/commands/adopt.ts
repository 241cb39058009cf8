import { readFileSync, writeFileSync } from 'node:fs';
import { basename, extname, resolve } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import {
  applyAdoption,
  fleetForUnowned,
  InvalidInputError,
  observe,
  observeUnowned,
  parseFleet,
  planAdoption,
  type AdoptionOutcome,
  type AdoptionPlan,
  type FleetSpec,
} from '@novacron/core';
import { loadFleet, withProviders, writeJson, type GlobalOptions, type Io } from '../context.js';
import { EXIT } from '../exit.js';
import { table } from '../output/table.js';

export interface AdoptOptions extends GlobalOptions {
  readonly group?: string;
  readonly names?: string;
  readonly writeFleet?: string;
  readonly fleetName?: string;
  readonly dryRun: boolean;
}

/**
 * `novacron adopt`: finds VMs on the fleet's hosts that no fleet owns, matches them to the
 * fleet's groups (name, size, image) — or, with `--write-fleet`, writes a new fleet file for
 * them — and records the ownership on each VM without restarting it.
 */
export async function adoptCommand(io: Io, options: AdoptOptions): Promise<number> {
  const fleet = await loadFleet(io, options);
  if (options.group && !(options.group in fleet.groups)) {
    throw new InvalidInputError(`no group "${options.group}" in fleet "${fleet.name}"`, { hint: `groups: ${Object.keys(fleet.groups).join(', ')}` });
  }
  return withProviders(io, options, fleet, async (providers) => {
    const [observed, unownedAll] = await Promise.all([observe(fleet, providers), observeUnowned(fleet, providers)]);
    const pattern = options.names ? globToRegExp(options.names) : undefined;
    const unowned = unownedAll.filter((vm) => !pattern || pattern.test(vm.name));
    let target: FleetSpec = fleet;
    let written: string | undefined;
    let adoption: AdoptionPlan;
    if (options.writeFleet) {
      const path = resolve(io.cwd, options.writeFleet);
      const name = options.fleetName ?? basename(path, extname(path)).toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '');
      const rawProviders = (parseYaml(readFileSync(resolve(io.cwd, options.file), 'utf8')) as { providers?: Record<string, unknown> }).providers ?? {};
      const { spec } = fleetForUnowned(name, rawProviders, unowned);
      if (Object.keys(spec['groups'] as object).length === 0) {
        throw new InvalidInputError(`no VM on the hosts of fleet "${fleet.name}" is without an owner${options.names ? ` and named like ${options.names}` : ''}`, { hint: 'nothing to write' });
      }
      target = parseFleet(spec, options.writeFleet);
      adoption = planAdoption(target, [], unowned);
      if (!options.dryRun) {
        writeFileSync(path, `# Written by novacron adopt from ${options.file}: VMs no fleet owned, one group per size and image.\n${stringifyYaml(spec)}`);
        written = path;
      }
    } else {
      adoption = planAdoption(fleet, observed.vms, unowned, { ...(options.group ? { group: options.group } : {}) });
    }
    const outcomes: AdoptionOutcome[] = options.dryRun ? [] : await applyAdoption(target, adoption, providers);
    const failed = outcomes.filter((o) => o.status === 'failed');
    if (options.json) {
      writeJson(io, {
        fleet: target.name,
        dryRun: options.dryRun,
        ...(written ? { written } : {}),
        adoptions: adoption.adoptions.map((a) => ({
          vm: a.vm.name, id: a.vm.id, host: a.vm.host, state: a.vm.state, group: a.group, index: a.index, image: a.image, reason: a.reason,
          ...(outcomes.length ? { status: outcomes.find((o) => o.adoption === a)?.status, ...(outcomes.find((o) => o.adoption === a)?.error ? { error: outcomes.find((o) => o.adoption === a)!.error!.toJSON() } : {}) } : {}),
        })),
        skipped: adoption.skipped.map((s) => ({ vm: s.vm.name, host: s.vm.host, reason: s.reason })),
      });
      return failed.length > 0 ? EXIT.failed : EXIT.ok;
    }
    const verb = options.dryRun ? 'would adopt' : 'adopted';
    io.stdout.write(`Fleet ${target.name}: ${adoption.adoptions.length - failed.length} VM(s) ${verb}, ${adoption.skipped.length} left as they are${written ? `; wrote ${written}` : ''}.\n`);
    if (adoption.adoptions.length > 0) {
      io.stdout.write(
        `${table(
          ['VM', 'HOST', 'STATE', 'SLOT', 'WHY'],
          adoption.adoptions.map((a) => [a.vm.name, a.vm.host, a.vm.state, `${a.group}[${a.index}]`, a.reason]),
        )}\n`,
      );
    }
    for (const s of adoption.skipped) io.stdout.write(`  - ${s.vm.name} on ${s.vm.host}: not adopted: ${s.reason}\n`);
    for (const f of failed) io.stdout.write(`  ✗ ${f.adoption.vm.name}: ${f.error?.describe()}\n`);
    if (!options.dryRun && adoption.adoptions.length > failed.length) io.stdout.write('The VMs kept running; `novacron plan` now counts them as the fleet\'s.\n');
    return failed.length > 0 ? EXIT.failed : EXIT.ok;
  });
}

function globToRegExp(glob: string): RegExp {
  return new RegExp(`^${glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
}
