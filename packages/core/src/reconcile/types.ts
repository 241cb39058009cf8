import type { Labels } from '../model/common.js';
import type { CloudInit, NicSpec } from '../model/fleet.js';
import type { MigrationPolicy } from '../model/policies.js';
import type { FieldChange, FieldChangeClass } from './changes.js';
import type { Host, Resources, VmRecord } from '../model/records.js';
import type { PlacementResult, UnplacedVm } from '../placement/types.js';
import type { Capabilities, CreateVmRequest, VmRef } from '../provider/Provider.js';

/** What the providers report: the source of truth, no state file. */
export interface Observed {
  readonly hosts: readonly Host[];
  /** VMs this fleet owns, from every provider. */
  readonly vms: readonly VmRecord[];
  readonly capabilities: Readonly<Record<string, Capabilities>>;
}

interface StepBase {
  /** Stable: `<kind>:<vm>`. */
  readonly id: string;
  readonly vm: string;
  readonly group: string;
  readonly provider: string;
  readonly reason: string;
  readonly dependsOn: readonly string[];
}

export interface CreateStep extends StepBase {
  readonly kind: 'create';
  readonly host: string;
  readonly request: CreateVmRequest;
}

export interface DeleteStep extends StepBase {
  readonly kind: 'delete';
  readonly host: string;
  readonly ref: VmRef;
  readonly resources: Resources;
  /** The first half of a replace: the VM is created anew by the `replace` step after it. */
  readonly replaced?: boolean;
}

export interface StartStep extends StepBase {
  readonly kind: 'start';
  readonly host: string;
  readonly ref: VmRef;
}

/** A change made to a running VM without replacing it: in place, hot-plugged, or at a reboot. */
export interface UpdateStep extends StepBase {
  readonly kind: 'update';
  readonly host: string;
  readonly ref: VmRef;
  readonly from: Resources;
  readonly to: Resources;
  readonly specHash: string;
  readonly changeClass: Exclude<FieldChangeClass, 'replace'>;
  readonly changes: readonly FieldChange[];
  readonly labels?: Labels;
  readonly cloudInit?: CloudInit;
  /** Reboot to apply new cloud-init data. */
  readonly reboot?: boolean;
  readonly allowReboot: boolean;
  /** Why the step is not applied (a reboot the policy does not allow). */
  readonly held?: string;
  /** The replacement to make when the cheap path fails, when the group allows it. */
  readonly fallback?: CreateVmRequest;
  /** On a cloud zone: the instance or machine type the new size needs. */
  readonly instanceType?: string;
  /** The NICs the group declares, when they differ from the VM's: the provider attaches and detaches to match. */
  readonly nics?: readonly NicSpec[];
}

/** Creates a VM anew after its `delete` step removed the old one (a change no cheaper path can make). */
export interface ReplaceStep extends StepBase {
  readonly kind: 'replace';
  readonly fromProvider: string;
  readonly fromHost: string;
  readonly ref: VmRef;
  readonly host: string;
  readonly request: CreateVmRequest;
  /** The field changes that make the replacement necessary, each with its class and reason. */
  readonly changes?: readonly FieldChange[];
}

export interface MigrateStep extends StepBase {
  readonly kind: 'migrate';
  readonly ref: VmRef;
  readonly from: string;
  readonly to: string;
  readonly mode: 'live' | 'cold';
  readonly policy: MigrationPolicy;
  readonly memoryMiB: number;
  /** Set when `to` is on another provider: the VM to make there from the exported disk. */
  readonly create?: CreateVmRequest;
}

export type PlanStep = CreateStep | DeleteStep | StartStep | UpdateStep | ReplaceStep | MigrateStep;
export type StepKind = PlanStep['kind'];
export const STEP_KINDS = ['delete', 'replace', 'update', 'migrate', 'start', 'create'] as const satisfies readonly StepKind[];

export function emptySummary(): Record<StepKind, number> & { unchanged: number } {
  return { delete: 0, replace: 0, update: 0, migrate: 0, start: 0, create: 0, unchanged: 0 };
}

export interface Plan {
  readonly fleet: string;
  readonly steps: readonly PlanStep[];
  /** VMs the fleet asks for that fit nowhere: an apply refuses such a plan. */
  readonly unplaced: readonly UnplacedVm[];
  readonly placement: PlacementResult;
  readonly summary: Readonly<Record<StepKind, number>> & { readonly unchanged: number };
  /** Hourly cost of the fleet once applied (hosts it keeps active, plus cloud instances). */
  readonly costPerHour: number;
  /**
   * Hard placement rules that running VMs break where they are now (moved by hand, by an HA
   * event, or rules changed since). Each becomes a migrate step when the VM can move; the
   * others are listed here with what stops them.
   */
  readonly violations?: readonly RuleViolation[];
}

/** A running VM that breaks a hard placement rule where it runs. */
export interface RuleViolation {
  readonly vm: string;
  readonly group: string;
  readonly host: string;
  /** The rule's name, as placement's validator reports it: `anti-affinity`, `max-per-host`, `zone`, `labels`, … */
  readonly rule: string;
  readonly message: string;
  /** `migrate`: a migrate step in this plan repairs it; `none`: nothing does, for `reason`. */
  readonly action: 'migrate' | 'none';
  readonly reason?: string;
}
