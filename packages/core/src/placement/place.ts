import { describeReasons, explainRejection } from './filters.js';
import { GuidePlanner } from './guide.js';
import { compileProblem, type Problem } from './problem.js';
import { objectivesOf } from './objectives.js';
import { paretoAlternatives } from './pareto.js';
import { HostScorer, resolveWeights } from './scorers.js';
import { solve, type SolveOutcome } from './solver.js';
import { SCORER_NAMES, type PlacementRequest, type PlacementResult, type UnplacedVm, type VmExplanation, type Weights } from './types.js';

/**
 * Decides where each VM runs: the hard rules (filters), the weighted soft rules (scorers),
 * a greedy pass and local search (solver), then Pareto alternatives and an explanation for
 * every VM. Existing VMs never move. Deterministic: the same request gives the same result.
 *
 * @throws InvalidInputError naming the host, VM or group when the request is inconsistent
 *   (duplicate ids, negative sizes, rules naming missing groups, rules no placement can meet).
 */
export function place(request: PlacementRequest): PlacementResult {
  const problem = compileProblem(request);
  const weights = resolveWeights(request.weights);
  const effort = request.effort ?? 1;
  const planner = new GuidePlanner(problem);
  const outcome = solve(problem, weights, effort, false, planner);
  const result = toResult(problem, outcome, weights);
  const alternatives = request.alternatives === false || problem.V === 0 ? [] : paretoAlternatives(problem, weights, effort, result, planner);
  return { ...result, alternatives };
}

function toResult(p: Problem, outcome: SolveOutcome, weights: Weights): Omit<PlacementResult, 'alternatives'> {
  const s = outcome.state;
  const assignments: Record<string, string> = {};
  const instanceTypes: Record<string, string> = {};
  const explanations: Record<string, VmExplanation> = {};
  const parts = new Float64Array(SCORER_NAMES.length);
  const scorer = new HostScorer(s, weights);
  // In id order, so the JSON of a result reads the same on every run.
  for (const v of p.byId) {
    const h = s.assign[v]!;
    if (h < 0) continue;
    const vm = p.vms[v]!;
    const host = p.hosts[h]!;
    assignments[vm.id] = host.id;
    const type = p.classes[p.vmClass[v]!]!.elasticType.get(h);
    if (type) instanceTypes[vm.id] = type.name;
    // Scores as of now, with the VM taken off its host: what the host offers it in the final placement.
    const { total, alone } = s.without(v, () => {
      scorer.prepare(v);
      return scorer.score(h, parts);
    });
    const addsCost = type ? type.pricePerHour : alone ? host.pricePerHour : 0;
    const group = p.groups[p.vmGroup[v]!]!;
    const scores: Record<string, number> = {};
    SCORER_NAMES.forEach((name, i) => {
      if (name === 'preferLabels' && !group.preferScore) return;
      if (name === 'locality' && group.near.length === 0) return;
      scores[name] = round(parts[i]!);
    });
    scores['total'] = round(total);
    scores['costPerHour'] = round(addsCost);
    const eligible = outcome.eligible[v]!;
    explanations[vm.id] = {
      host: host.id,
      reason:
        outcome.notes.get(v) ??
        (eligible < 0
          ? `filled host by host: ${host.id} packed the most for what it counts against the weights when opened, and this VM fitted its free room best (${p.classes[p.vmClass[v]!]!.candidates.length} hosts meet its host rules)${type ? `; cheapest fitting type ${type.name}` : ''}`
          : `highest weighted score of the ${eligible} ${eligible === 1 ? 'host' : 'hosts'} that met every rule${type ? `; cheapest fitting type ${type.name}` : ''}`),
      scores,
      ...(type ? { instanceType: type.name } : {}),
      ...(eligible >= 0 ? { eligibleHosts: eligible } : {}),
    };
  }
  const unplaced: UnplacedVm[] = outcome.unplaced
    .map((v) => {
      const reasons = explainRejection(s, v);
      return { id: p.vms[v]!.id, reasons, message: describeReasons(reasons, p.H) };
    })
    .sort((a, b) => (a.id < b.id ? -1 : 1));
  return { assignments, instanceTypes, unplaced, explanations, objectives: objectivesOf(s), weights };
}

const round = (n: number) => Math.round(n * 10_000) / 10_000;
