import type { Labels } from '../model/common.js';
import type { PlacementRules, PlacementWeights } from '../model/fleet.js';
import type { Host, Resources } from '../model/records.js';

/** A VM to be placed. */
export interface PlacementVm {
  readonly id: string;
  readonly group: string;
  readonly resources: Resources;
  readonly labels?: Labels;
  /** The group's rules. Every VM of a group must carry the same rules (or none, and `groupRules` names them). */
  readonly rules?: PlacementRules;
}

/**
 * A VM already running somewhere; its resources are already in its host's `allocated`.
 * Placement never moves it. One on a host that is not in the request's `hosts` is ignored.
 */
export interface PlacedVm {
  readonly id: string;
  readonly group: string;
  readonly host: string;
}

export interface PlacementRequest {
  readonly hosts: readonly Host[];
  readonly vms: readonly PlacementVm[];
  readonly existing?: readonly PlacedVm[];
  /**
   * The weights of the soft rules. The weights given are the whole objective: one left out
   * counts 0. When none is given, {@link DEFAULT_WEIGHTS} apply.
   */
  readonly weights?: PlacementWeights;
  /** Breaks ties between equal hosts and orders the local search: the same seed gives the same placement. @default 0 */
  readonly seed?: number;
  /**
   * Rules of groups by name, for groups whose VMs all run already (so rules such as
   * `avoidGroups` hold both ways), for groups with no VMs at all (scaled to 0: a rule may name
   * them; avoiding or being near one asks nothing, running with one is an InvalidInputError),
   * and for VMs that carry no `rules` of their own. A rule naming a group known in none of
   * these ways (no VMs, running or to place, and no rules here) is an InvalidInputError.
   */
  readonly groupRules?: Readonly<Record<string, PlacementRules>>;
  /** Search for the Pareto-optimal alternatives (cheapest, fewest hosts, most balanced…). @default true */
  readonly alternatives?: boolean;
  /**
   * How hard the local search tries after the greedy pass, as a multiple of its default
   * budget of moves (a count, not a time, so results never depend on the machine).
   * 0 keeps the greedy placement. @default 1
   */
  readonly effort?: number;
}

/** The soft rules, each scored 0..1 for a VM on a host; the weighted sum picks the host. */
export const SCORER_NAMES = ['cost', 'consolidation', 'balance', 'headroom', 'preferLabels', 'locality'] as const;
export type ScorerName = (typeof SCORER_NAMES)[number];
export type Weights = Readonly<Record<ScorerName, number>>;

export interface VmExplanation {
  readonly host: string;
  readonly reason: string;
  /** Each soft rule's score (0..1) for this VM on its host, `total` (the weighted sum), and `costPerHour` it adds. */
  readonly scores: Readonly<Record<string, number>>;
  readonly instanceType?: string;
  /** Hosts that met every hard rule when the VM was placed. */
  readonly eligibleHosts?: number;
}

export interface UnplacedVm {
  readonly id: string;
  /** Hosts ruled out by each rule, e.g. `{ memory: 812, zone: 120 }`; each host is counted once, under the first rule it fails. */
  readonly reasons: Readonly<Record<string, number>>;
  readonly message: string;
}

export interface PlacementObjectives {
  /** Fixed (non-elastic) hosts that carry any VM, or any reported allocation. */
  readonly activeHosts: number;
  /** Active fixed hosts' prices plus the instance types chosen on elastic hosts. */
  readonly costPerHour: number;
  /** Standard deviation of the hosts' utilisation (their fullest dimension), over every usable fixed host, 0..1. */
  readonly imbalance: number;
  /** Utilisation of the fullest host (its fullest dimension), 0..1; 1 minus it is the headroom left. */
  readonly peakUtilisation?: number;
  /** VMs placed on a host that lacks some of their preferred labels. */
  readonly preferenceMisses?: number;
  readonly placed?: number;
  readonly unplaced?: number;
}

export interface PlacementAlternative {
  /** What it is best at: `cheapest`, `fewest hosts`, `most balanced`, `most headroom`, joined when one placement is several. */
  readonly label: string;
  readonly assignments: Readonly<Record<string, string>>;
  readonly objectives: PlacementObjectives;
  /** The weights that produced it, to ask for it again. */
  readonly weights?: Weights;
  readonly instanceTypes?: Readonly<Record<string, string>>;
}

export interface PlacementResult {
  /** VM id → host id. */
  readonly assignments: Readonly<Record<string, string>>;
  /** VM id → instance or machine type, for VMs placed on elastic (cloud) hosts. */
  readonly instanceTypes: Readonly<Record<string, string>>;
  readonly unplaced: readonly UnplacedVm[];
  readonly explanations: Readonly<Record<string, VmExplanation>>;
  readonly objectives: PlacementObjectives;
  /** Pareto-optimal placements found besides this one: none of them is worse in every objective than another. */
  readonly alternatives: readonly PlacementAlternative[];
  /** The weights in effect. */
  readonly weights?: Weights;
}
