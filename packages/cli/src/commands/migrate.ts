import {
  apply,
  assertPolicyPossible,
  formatBytes,
  InvalidInputError,
  migrationPolicy,
  NotFoundError,
  observe,
  place,
  planDrain,
  predictMigration,
  supports,
  UnsupportedError,
  emptySummary,
  fleetGroupRules,
  type FleetSpec,
  type MigrationPolicy,
  type MigrationResult,
  type Observed,
  type Plan,
  type Prediction,
  type ProviderSet,
  type VmRecord,
} from '@novacron/core';
import { loadFleet, withProviders, writeJson, type GlobalOptions, type Io } from '../context.js';
import { EXIT } from '../exit.js';
import { planJson, renderPlan } from '../output/plan.js';
import { progressReporter } from '../output/progress.js';
import { formatMs, table } from '../output/table.js';

/** Policy flags shared by `migrate` and `drain`; each overrides the group's migration policy. */
export interface PolicyFlags {
  readonly mode?: 'live' | 'cold';
  readonly maxDowntime?: number;
  readonly bandwidth?: number;
  readonly pacing?: number;
  readonly autoConverge?: boolean;
  readonly postCopy?: boolean;
  readonly postCopyAfter?: number;
  readonly compression?: string;
  readonly parallel?: number;
  readonly timeoutPerGib?: string;
  readonly onTimeout?: string;
  readonly wanProfile?: string;
}

export interface MigrateOptions extends GlobalOptions, PolicyFlags {
  readonly to: string;
  readonly dryRun: boolean;
}

const FLAG_OF: Record<string, string> = {
  maxDowntimeMs: '--max-downtime', bandwidthMbps: '--bandwidth', pacing: '--pacing', autoConverge: '--auto-converge', postCopy: '--post-copy',
  compression: '--compression', parallelConnections: '--parallel', timeoutPerGiB: '--timeout-per-gib', onTimeout: '--on-timeout', wanProfile: '--wan-profile', mode: '--mode',
};

/** The group's policy with the command-line flags over it, validated like the fleet file. */
export function policyWithFlags(base: MigrationPolicy, flags: PolicyFlags): MigrationPolicy {
  const merged = {
    ...base,
    ...(flags.mode ? { mode: flags.mode } : {}),
    ...(flags.maxDowntime !== undefined ? { maxDowntimeMs: flags.maxDowntime } : {}),
    ...(flags.bandwidth !== undefined ? { bandwidthMbps: flags.bandwidth } : {}),
    ...(flags.pacing !== undefined ? { pacing: flags.pacing } : {}),
    ...(flags.autoConverge !== undefined ? { autoConverge: flags.autoConverge } : {}),
    ...(flags.postCopy !== undefined || flags.postCopyAfter !== undefined
      ? { postCopy: { allowed: flags.postCopy ?? base.postCopy.allowed, afterRounds: flags.postCopyAfter ?? base.postCopy.afterRounds } }
      : {}),
    ...(flags.compression ? { compression: flags.compression } : {}),
    ...(flags.parallel !== undefined ? { parallelConnections: flags.parallel } : {}),
    ...(flags.timeoutPerGib ? { timeoutPerGiB: flags.timeoutPerGib } : {}),
    ...(flags.onTimeout ? { onTimeout: flags.onTimeout } : {}),
    ...(flags.wanProfile ? { wanProfile: flags.wanProfile } : {}),
  };
  const result = migrationPolicy.safeParse(merged);
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${FLAG_OF[String(i.path[0])] ?? i.path.join('.')}: ${i.message}`);
    throw new InvalidInputError(`invalid migration policy: ${problems.join('; ')}`);
  }
  return result.data;
}

/** The prediction for one VM: what the pre-copy model says, from what the provider measures. */
export async function predictFor(vm: VmRecord, toHost: string, policy: MigrationPolicy, providers: ProviderSet): Promise<Prediction | undefined> {
  const provider = providers.get(vm.provider);
  if (!supports(provider, 'liveMigration')) return undefined;
  const inputs = await provider.estimateMigration({ name: vm.name, fleet: vm.fleet, id: vm.id, host: vm.host }, toHost);
  return predictMigration(inputs, policy, vm.resources.memoryMiB);
}

/** `novacron migrate VM --to HOST`: checks everything first, predicts, moves, and prints measured beside predicted. */
export async function migrateCommand(io: Io, vmName: string, options: MigrateOptions): Promise<number> {
  const fleet = await loadFleet(io, options);
  return withProviders(io, options, fleet, async (providers) => {
    const observed = await observe(fleet, providers);
    const { vm, to, policy } = checkMove(fleet, observed, vmName, options);
    const mode = policy.mode === 'cold' || vm.state !== 'running' || !observed.capabilities[vm.provider]?.liveMigration ? 'cold' : 'live';
    const prediction = mode === 'live' ? await predictFor(vm, to, policy, providers) : undefined;
    if (options.dryRun) {
      if (options.json) writeJson(io, { vm: vm.name, from: vm.host, to, mode, policy, prediction: prediction && summarize(prediction) });
      else io.stdout.write(renderPrediction(vm, to, mode, prediction));
      return EXIT.ok;
    }
    const plan: Plan = {
      fleet: fleet.name,
      steps: [{ id: `migrate:${vm.name}`, kind: 'migrate', vm: vm.name, group: vm.group, provider: vm.provider, reason: 'asked on the command line', dependsOn: [], ref: { name: vm.name, fleet: fleet.name, id: vm.id, host: vm.host }, from: vm.host, to, mode, policy: { ...policy, mode }, memoryMiB: vm.resources.memoryMiB }],
      unplaced: [],
      placement: { assignments: {}, instanceTypes: {}, unplaced: [], explanations: {}, objectives: { activeHosts: 0, costPerHour: 0, imbalance: 0 }, alternatives: [] },
      summary: { ...emptySummary(), migrate: 1 },
      costPerHour: 0,
    };
    let measured: MigrationResult | undefined;
    const reporter = options.json ? undefined : progressReporter(io.stderr);
    const result = await apply(plan, providers, {
      onEvent: (event) => {
        reporter?.(event);
        if (event.type === 'step.done' && event.migration) measured = event.migration;
      },
    });
    const outcome = result.outcomes[0]!;
    if (options.json) {
      writeJson(io, { ok: result.ok, vm: vm.name, from: vm.host, to, mode, prediction: prediction && summarize(prediction), measured: measured && measuredJson(measured), ...(outcome.error ? { error: outcome.error.toJSON() } : {}) });
    } else if (outcome.status === 'done' && measured) {
      io.stdout.write(renderMeasured(vm, to, measured, prediction));
    } else {
      io.stdout.write(`Migration of ${vm.name} failed: ${outcome.error?.describe() ?? 'unknown error'}\n`);
    }
    return result.ok ? EXIT.ok : EXIT.failed;
  });
}

/** Every check that can fail before anything moves: the VM, the host, capacity, the policy. */
function checkMove(fleet: FleetSpec, observed: Observed, vmName: string, options: MigrateOptions) {
  const vm = observed.vms.find((v) => v.name === vmName);
  if (!vm) {
    throw new NotFoundError(`fleet "${fleet.name}" owns no VM named "${vmName}"`, {
      hint: `its VMs: ${observed.vms.slice(0, 8).map((v) => v.name).join(', ')}${observed.vms.length > 8 ? ', …' : ''}`,
    });
  }
  const dest = observed.hosts.find((h) => h.id === options.to || (h.name === options.to && h.provider === vm.provider));
  if (!dest) throw new NotFoundError(`no host "${options.to}" in the fleet's providers`, { context: { vm: vm.name } });
  if (dest.id === vm.host) throw new InvalidInputError(`${vm.name} already runs on ${dest.id}`, { context: { vm: vm.name, host: dest.id }, hint: 'choose another host' });
  if (dest.provider !== vm.provider) {
    throw new UnsupportedError(`moving ${vm.name} from provider "${vm.provider}" to "${dest.provider}" is a cross-provider move`, { hint: 'change the group\'s placement.providers and apply, or use the image export/import path' });
  }
  const fit = place({ hosts: [dest], vms: [{ id: vm.name, group: vm.group, resources: vm.resources, rules: { ...(fleet.groups[vm.group]?.placement ?? {}), providers: [vm.provider] } }], existing: observed.vms.filter((v) => v !== vm).map((v) => ({ id: v.name, group: v.group, host: v.host })), groupRules: fleetGroupRules(fleet), alternatives: false });
  if (fit.unplaced.length > 0) {
    throw new InvalidInputError(`${dest.id} cannot take ${vm.name}: ${Object.keys(fit.unplaced[0]!.reasons).join(', ')} rule(s) rule it out`, { context: { vm: vm.name, host: dest.id }, hint: 'nothing was moved; choose another host or free capacity' });
  }
  const base = fleet.groups[vm.group]?.migration ?? migrationPolicy.parse({});
  const policy = policyWithFlags(base, options);
  assertPolicyPossible(policy, vm.resources.memoryMiB);
  return { vm, to: dest.id, policy };
}

function summarize(p: Prediction) {
  return { converges: p.converges, strategy: p.strategy, rounds: p.rounds, totalMs: finite(p.totalMs), downtimeMs: finite(p.downtimeMs), bytesSent: Math.round(p.bytesSent), reason: p.reason };
}

function measuredJson(m: MigrationResult) {
  return { mode: m.mode, durationMs: Math.round(m.durationMs), downtimeMs: m.postCopy && m.downtimeMs === 0 ? null : m.downtimeMs, bytesTransferred: m.bytesTransferred, iterations: m.iterations, postCopy: m.postCopy, actions: m.actions ?? [] };
}

const finite = (n: number) => (Number.isFinite(n) ? Math.round(n) : null);

function renderPrediction(vm: VmRecord, to: string, mode: string, p: Prediction | undefined): string {
  if (!p) return `${vm.name}: ${vm.host} → ${to}, ${mode} migration (no prediction: the provider offers no live-migration estimate).\n`;
  return [
    `${vm.name}: ${vm.host} → ${to}, ${mode} migration — ${p.converges ? `converges (${p.strategy})` : 'will not converge as configured'}`,
    `  ${p.reason}`,
    `  predicted: ${p.rounds} round(s), ${Number.isFinite(p.totalMs) ? formatMs(p.totalMs) : '∞'} total, ${Number.isFinite(p.downtimeMs) ? `${Math.round(p.downtimeMs)} ms` : '∞'} downtime, ${formatBytes(p.bytesSent)} sent`,
    '',
  ].join('\n');
}

function renderMeasured(vm: VmRecord, to: string, m: MigrationResult, p: Prediction | undefined): string {
  const rows: (string | number)[][] = [
    ['total time', Number.isFinite(p?.totalMs ?? NaN) ? formatMs(p!.totalMs) : '-', formatMs(m.durationMs)],
    // libvirt and QEMU report no downtime for a post-copy move (0): say so rather than print 0 ms.
    ['downtime', p && Number.isFinite(p.downtimeMs) ? `${Math.round(p.downtimeMs)} ms` : '-', m.postCopy && m.downtimeMs === 0 ? 'not reported (post-copy)' : `${Math.round(m.downtimeMs)} ms`],
    ['rounds', p?.rounds ?? '-', m.iterations],
    ['bytes sent', p ? formatBytes(p.bytesSent) : '-', formatBytes(m.bytesTransferred)],
    ['strategy', p?.strategy ?? '-', m.postCopy ? 'post-copy' : (m.actions ?? []).some((a) => a.kind === 'auto-converge') ? 'auto-converge' : m.mode === 'live' ? 'pre-copy' : 'cold'],
  ];
  return `Moved ${vm.name}: ${vm.host} → ${to} (${m.mode}).\n${table(['', 'PREDICTED', 'MEASURED'], rows)}\n`;
}

export interface DrainCommandOptions extends GlobalOptions, PolicyFlags {
  readonly dryRun: boolean;
  readonly concurrency: number;
}

/** `novacron drain HOST`: moves every VM of the fleet off a host, a few at a time per host. */
export async function drainCommand(io: Io, host: string, options: DrainCommandOptions): Promise<number> {
  const fleet = await loadFleet(io, options);
  return withProviders(io, options, fleet, async (providers) => {
    const observed = await observe(fleet, providers);
    const policyOverride = policyWithFlags(migrationPolicy.parse({}), options);
    const overrides: Partial<MigrationPolicy> = Object.fromEntries(
      Object.entries(policyOverride).filter(([key]) => hasFlag(options, key)),
    );
    const drain = planDrain(fleet, observed, host, { ...(options.mode ? { mode: options.mode } : {}), policy: overrides });
    for (const step of drain.steps) if (step.kind === 'migrate') assertPolicyPossible(step.policy, step.memoryMiB, `groups.${step.group}.migration`);
    if (options.dryRun || drain.unplaced.length > 0) {
      if (options.json) writeJson(io, planJson(drain));
      else io.stdout.write(`${renderPlan(drain)}\n`);
      if (drain.unplaced.length > 0) throw new InvalidInputError(`${drain.unplaced.length} VM(s) have nowhere to go; nothing was moved`);
      return EXIT.ok;
    }
    if (!options.json) io.stdout.write(`${renderPlan(drain, 20)}\n`);
    const reporter = options.json ? undefined : progressReporter(io.stderr);
    const result = await apply(drain, providers, { concurrency: options.concurrency, ...(reporter ? { onEvent: reporter } : {}) });
    if (options.json) writeJson(io, { ok: result.ok, durationMs: result.durationMs, outcomes: result.outcomes.map((o) => ({ step: o.step.id, status: o.status, ...(o.error ? { error: o.error.toJSON() } : {}) })) });
    else io.stdout.write(`${result.ok ? 'Drained' : 'Drain incomplete'}: ${result.outcomes.filter((o) => o.status === 'done').length}/${drain.steps.length} VM(s) moved in ${formatMs(result.durationMs)}.\n`);
    return result.ok ? EXIT.ok : EXIT.failed;
  });
}

const FLAG_KEYS: Record<string, keyof PolicyFlags> = {
  maxDowntimeMs: 'maxDowntime', bandwidthMbps: 'bandwidth', pacing: 'pacing', autoConverge: 'autoConverge', postCopy: 'postCopy', compression: 'compression',
  parallelConnections: 'parallel', timeoutPerGiB: 'timeoutPerGib', onTimeout: 'onTimeout', wanProfile: 'wanProfile',
};
function hasFlag(flags: PolicyFlags, policyKey: string): boolean {
  const flag = FLAG_KEYS[policyKey];
  return flag !== undefined && flags[flag] !== undefined || (policyKey === 'postCopy' && flags.postCopyAfter !== undefined);
}
