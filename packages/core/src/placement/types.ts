import type { Labels } from '../model/common.js';
import type { PlacementRules, PlacementWeights } from '../model/fleet.js';
import type { Host, Resources } from '../model/records.js';

/** A VM to be placed. */
export interface PlacementVm {
  readonly id: string;
  readonly group: string;
  readonly resources: Resources;
  readonly labels?: Labels;
  readonly rules?: PlacementRules;
}

/** A VM already running somewhere; its resources are already in its host's `allocated`. */
export interface PlacedVm {
  readonly id: string;
  readonly group: string;
  readonly host: string;
}

export interface PlacementRequest {
  readonly hosts: readonly Host[];
  readonly vms: readonly PlacementVm[];
  readonly existing?: readonly PlacedVm[];
  readonly weights?: PlacementWeights;
  readonly seed?: number;
}

export interface VmExplanation {
  readonly host: string;
  readonly reason: string;
  readonly scores: Readonly<Record<string, number>>;
  readonly instanceType?: string;
}

export interface UnplacedVm {
  readonly id: string;
  /** Hosts ruled out by each rule, e.g. `{ memory: 812, zone: 120 }`. */
  readonly reasons: Readonly<Record<string, number>>;
  readonly message: string;
}

export interface PlacementObjectives {
  readonly activeHosts: number;
  readonly costPerHour: number;
  /** Standard deviation of memory utilisation across active hosts, 0..1. */
  readonly imbalance: number;
}

export interface PlacementAlternative {
  readonly label: string;
  readonly assignments: Readonly<Record<string, string>>;
  readonly objectives: PlacementObjectives;
}

export interface PlacementResult {
  /** VM id → host id. */
  readonly assignments: Readonly<Record<string, string>>;
  /** VM id → instance or machine type, for VMs placed on elastic (cloud) hosts. */
  readonly instanceTypes: Readonly<Record<string, string>>;
  readonly unplaced: readonly UnplacedVm[];
  readonly explanations: Readonly<Record<string, VmExplanation>>;
  readonly objectives: PlacementObjectives;
  readonly alternatives: readonly PlacementAlternative[];
}
