import type { Plan, PlanStep } from '@novacron/core';

const SYMBOL: Record<PlanStep['kind'], string> = { create: '+', delete: '-', start: '▶', update: '~', replace: '±', migrate: '→' };

/** The plan for people: a headline, then a line per step with its reason. */
export function renderPlan(plan: Plan, limit = 200): string {
  const s = plan.summary;
  const changes = plan.steps.length;
  const lines: string[] = [];
  if (changes === 0 && plan.unplaced.length === 0) {
    lines.push(`Fleet ${plan.fleet}: no changes. ${s.unchanged} VM(s) match the spec. Cost $${plan.costPerHour.toFixed(2)}/h.`);
    for (const v of plan.violations ?? []) lines.push(`  ! ${v.vm} on ${v.host}: rule ${v.rule} broken (${v.message}); ${v.reason ?? ''}`);
    return lines.join('\n');
  }
  const parts = (['create', 'replace', 'update', 'migrate', 'start', 'delete'] as const).filter((k) => s[k] > 0).map((k) => `${s[k]} to ${k}`);
  lines.push(`Fleet ${plan.fleet}: ${parts.join(', ') || 'nothing to change'}${s.unchanged ? `, ${s.unchanged} unchanged` : ''}. Cost after apply $${plan.costPerHour.toFixed(2)}/h.`);
  for (const step of plan.steps.slice(0, limit)) {
    const cls = step.kind === 'update' ? ` [${step.changeClass}]` : step.kind === 'replace' ? ' [replace]' : step.kind === 'migrate' ? ` [migrate: ${step.mode}]` : '';
    const held = step.kind === 'update' && step.held ? `  (HELD: ${step.held})` : '';
    lines.push(`  ${SYMBOL[step.kind]} ${step.kind.padEnd(7)} ${step.vm}${cls}  ${where(step)}  — ${step.reason}${held}`);
  }
  if (plan.steps.length > limit) lines.push(`  … and ${plan.steps.length - limit} more steps (use --json for all)`);
  const stuck = (plan.violations ?? []).filter((v) => v.action === 'none');
  if (stuck.length > 0) {
    lines.push(`${stuck.length} VM(s) break a placement rule where they run, and nothing in this plan moves them:`);
    for (const v of stuck.slice(0, limit)) lines.push(`  ! ${v.vm} on ${v.host}: rule ${v.rule} broken (${v.message}); ${v.reason}`);
  }
  if (plan.unplaced.length > 0) {
    lines.push(`${plan.unplaced.length} VM(s) fit nowhere; apply will refuse this plan:`);
    for (const u of plan.unplaced.slice(0, limit)) lines.push(`  ! ${u.id}: ${u.message}`);
  }
  return lines.join('\n');
}

function where(step: PlanStep): string {
  switch (step.kind) {
    case 'migrate':
      return `${step.from} → ${step.to}`;
    case 'replace':
      return step.fromHost === step.host ? `on ${step.host}` : `${step.fromHost} → ${step.host}`;
    case 'create':
      return `on ${step.host}${step.request.instanceType ? ` (${step.request.instanceType})` : ''}`;
    case 'update':
      return `on ${step.host}${step.instanceType ? ` (→ ${step.instanceType})` : ''}`;
    default:
      return `on ${step.host}`;
  }
}

/** The plan for scripts. */
export function planJson(plan: Plan) {
  return {
    fleet: plan.fleet,
    changes: plan.steps.length,
    summary: plan.summary,
    costPerHour: plan.costPerHour,
    steps: plan.steps.map((step) => ({
      id: step.id,
      kind: step.kind,
      vm: step.vm,
      group: step.group,
      provider: step.provider,
      ...(step.kind === 'migrate' ? { from: step.from, to: step.to } : { host: step.host }),
      // Every step says how its VM is changed: its class, and per changed field the class and reason.
      changeClass: step.kind === 'update' ? step.changeClass : step.kind === 'replace' ? 'replace' : step.kind === 'migrate' ? 'migrate' : step.kind,
      ...(step.kind === 'replace' ? { fromHost: step.fromHost, changes: step.changes ?? [] } : {}),
      ...(step.kind === 'update' ? { changes: step.changes, ...(step.held ? { held: step.held } : {}) } : {}),
      ...(step.kind === 'migrate' ? { mode: step.mode } : {}),
      reason: step.reason,
      dependsOn: step.dependsOn,
    })),
    unplaced: plan.unplaced,
    violations: plan.violations ?? [],
    placement: { objectives: plan.placement.objectives, explanations: plan.placement.explanations },
  };
}
