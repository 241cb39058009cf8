import { readFile, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { InvalidInputError, parsePlacementInput, parseWeights, place, type PlacementObjectives, type PlacementResult } from '@novacron/core';
import { writeJson, type Io } from '../context.js';
import { EXIT } from '../exit.js';
import { renderPlaceReport } from '../output/placeReport.js';
import { table } from '../output/table.js';

export interface PlaceOptions {
  readonly hosts: string;
  readonly vms: string;
  readonly rules?: string;
  readonly weights?: string;
  readonly seed?: number;
  readonly json: boolean;
  readonly html?: string;
}

/**
 * `novacron place`: places an inventory of VMs on an inventory of hosts and prints where each
 * goes and why, touching nothing (a what-if). Exit 0 when every VM is placed, 2 when the
 * input is invalid or some VM fits nowhere (as `plan`).
 */
export async function placeCommand(io: Io, options: PlaceOptions): Promise<number> {
  const [hosts, vms, rules] = await Promise.all([
    readJson(io, options.hosts, '--hosts'),
    readJson(io, options.vms, '--vms'),
    options.rules === undefined ? undefined : readJson(io, options.rules, '--rules'),
  ]);
  const { request, running } = parsePlacementInput({ hosts, vms, ...(rules === undefined ? {} : { rules }) }, { hosts: options.hosts, vms: options.vms, ...(options.rules ? { rules: options.rules } : {}) });
  const weights = options.weights === undefined ? undefined : parseWeights(options.weights);
  const result = place({ ...request, ...(weights ? { weights } : {}), ...(options.seed === undefined ? {} : { seed: options.seed }) });

  if (options.html) {
    const path = resolve(io.cwd, options.html);
    await writeFile(path, renderPlaceReport(request, result, running));
    if (!options.json) io.stderr.write(`Report written to ${options.html}\n`);
  }
  if (options.json) {
    writeJson(io, {
      assignments: result.assignments,
      unplaced: result.unplaced.map((u) => ({ id: u.id, reasons: u.reasons })),
      objectives: result.objectives,
      alternatives: result.alternatives.map((a) => ({ label: a.label, objectives: a.objectives, assignments: a.assignments })),
    });
  } else {
    io.stdout.write(`${renderPlacement(request.vms.length, result)}\n`);
  }
  return result.unplaced.length > 0 ? EXIT.invalid : EXIT.ok;
}

async function readJson(io: Io, file: string, flag: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(resolve(io.cwd, file), 'utf8');
  } catch (thrown) {
    throw new InvalidInputError(`${flag} ${file}: cannot read it (${(thrown as NodeJS.ErrnoException).code ?? String(thrown)})`, { cause: thrown });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (thrown) {
    throw new InvalidInputError(`${flag} ${file}: not valid JSON (${(thrown as Error).message})`, { cause: thrown });
  }
}

/** The placement for people: a headline, the busiest hosts, what did not fit and why, the alternatives. */
export function renderPlacement(total: number, result: PlacementResult, limit = 20): string {
  const o = result.objectives;
  const lines: string[] = [];
  const placed = Object.keys(result.assignments).length;
  lines.push(`Placed ${placed} of ${total} VM(s) on ${o.activeHosts} active host(s): ${describe(o)}.`);
  if (result.weights) {
    const w = Object.entries(result.weights).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${v}`);
    lines.push(`Weights: ${w.join(', ')}.`);
  }
  const perHost = new Map<string, string[]>();
  for (const [vm, host] of Object.entries(result.assignments)) perHost.set(host, [...(perHost.get(host) ?? []), vm]);
  if (perHost.size > 0) {
    const rows = [...perHost.entries()].sort((a, b) => b[1].length - a[1].length || (a[0] < b[0] ? -1 : 1));
    lines.push('', table(['HOST', 'NEW VMS', 'FOR EXAMPLE'], rows.slice(0, limit).map(([host, vms]) => [host, vms.length, vms.slice(0, 3).join(', ') + (vms.length > 3 ? ', …' : '')])));
    if (rows.length > limit) lines.push(`… and ${rows.length - limit} more hosts (use --json or --html)`);
  }
  const explained = Object.entries(result.explanations).slice(0, Math.min(limit, 5));
  if (explained.length) {
    lines.push('', 'Why (first VMs; --html lists all):');
    for (const [vm, e] of explained) {
      const scores = Object.entries(e.scores).map(([k, v]) => `${k} ${v}`).join(', ');
      lines.push(`  ${vm} → ${e.host}${e.instanceType ? ` (${e.instanceType})` : ''}: ${e.reason} [${scores}]`);
    }
  }
  if (result.unplaced.length) {
    lines.push('', `${result.unplaced.length} VM(s) fit nowhere:`);
    for (const u of result.unplaced.slice(0, limit)) lines.push(`  ! ${u.id}: ${u.message}`);
    if (result.unplaced.length > limit) lines.push(`  … and ${result.unplaced.length - limit} more (use --json)`);
  }
  if (result.alternatives.length) {
    lines.push('', 'Alternatives (none is better in every objective):');
    lines.push(
      table(
        ['', 'HOSTS', '$/H', 'IMBALANCE', 'FULLEST', 'UNPLACED'],
        [
          ['chosen', o.activeHosts, o.costPerHour.toFixed(2), o.imbalance.toFixed(3), percent(o.peakUtilisation), o.unplaced ?? 0],
          ...result.alternatives.map((a) => [a.label, a.objectives.activeHosts, a.objectives.costPerHour.toFixed(2), a.objectives.imbalance.toFixed(3), percent(a.objectives.peakUtilisation), a.objectives.unplaced ?? 0]),
        ],
      ).replace(/^/gm, '  '),
    );
  }
  return lines.join('\n');
}

function describe(o: PlacementObjectives): string {
  return `$${o.costPerHour.toFixed(2)}/h, imbalance ${o.imbalance.toFixed(3)}, fullest host at ${percent(o.peakUtilisation)}`;
}

function percent(n: number | undefined): string {
  return n === undefined ? '-' : `${Math.round(n * 100)}%`;
}

