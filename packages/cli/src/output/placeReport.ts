import type { Host, PlacementRequest, PlacementResult, Resources } from '@novacron/core';

/**
 * The placement as one self-contained HTML page (no scripts, no external files, so it can be
 * mailed or attached to a ticket): the objectives and alternatives, each host's fill per
 * dimension as bars (what ran already, what this placement adds), the explanation of every
 * placed VM and the reasons of every unplaced one.
 */
export function renderPlaceReport(
  request: PlacementRequest,
  result: PlacementResult,
  running: readonly { readonly id: string; readonly host: string; readonly resources: Resources }[] = [],
): string {
  const vmById = new Map(request.vms.map((vm) => [vm.id, vm]));
  const added = new Map<string, { vms: string[]; sum: number[] }>();
  for (const [vm, host] of Object.entries(result.assignments)) {
    const entry = added.get(host) ?? { vms: [], sum: [0, 0, 0, 0] };
    const r = vmById.get(vm)!.resources;
    entry.vms.push(vm);
    DIMS.forEach(([key], i) => (entry.sum[i]! += r[key]));
    added.set(host, entry);
  }
  const runningOn = new Map<string, string[]>();
  for (const r of running) runningOn.set(r.host, [...(runningOn.get(r.host) ?? []), r.id]);
  const hosts = [...request.hosts].sort((a, b) => (added.get(b.id)?.vms.length ?? 0) - (added.get(a.id)?.vms.length ?? 0) || (a.id < b.id ? -1 : 1));
  const o = result.objectives;

  const hostBlocks = hosts.map((h) => {
    const mine = added.get(h.id);
    if (!mine && !runningOn.has(h.id) && !isActive(h)) return '';
    const bars = h.instanceTypes
      ? `<p class="note">elastic: each VM gets an instance of its own (${h.instanceTypes.map((t) => esc(t.name)).join(', ')})</p>`
      : DIMS.map(([key, label, over], i) => {
          const cap = h.capacity[key] * (over ? h.overcommit[over] : 1);
          if (cap <= 0 || cap >= 1e12) return ''; // none, or not a constraint (the inventory did not say)
          const before = h.allocated[key];
          const plus = mine?.sum[i] ?? 0;
          const pctBefore = Math.min(100, (before / cap) * 100);
          const pctPlus = Math.min(100 - pctBefore, (plus / cap) * 100);
          return `<div class="bar"><span class="dim">${label}</span><span class="track" title="${fmt(before + plus)} of ${fmt(cap)}"><span class="old" style="width:${pctBefore.toFixed(1)}%"></span><span class="new" style="width:${pctPlus.toFixed(1)}%"></span></span><span class="pct">${(((before + plus) / cap) * 100).toFixed(0)}%</span></div>`;
        }).join('');
    const vms = [...(runningOn.get(h.id) ?? []).map((id) => `<span class="vm old">${esc(id)}</span>`), ...(mine?.vms ?? []).map((id) => `<span class="vm">${esc(id)}</span>`)].join(' ');
    return `<section class="host${h.state === 'up' ? '' : ' off'}"><h3>${esc(h.id)} <small>${esc(h.zone)} · ${esc(h.state)} · $${h.pricePerHour}/h</small></h3>${bars}<div class="vms">${vms}</div></section>`;
  });

  const explanations = Object.entries(result.explanations)
    .map(([vm, e]) => `<tr><td>${esc(vm)}</td><td>${esc(e.host)}${e.instanceType ? ` (${esc(e.instanceType)})` : ''}</td><td>${esc(e.reason)}</td><td>${Object.entries(e.scores).map(([k, v]) => `${esc(k)} ${v}`).join(', ')}</td></tr>`)
    .join('');
  const unplaced = result.unplaced
    .map((u) => `<tr><td>${esc(u.id)}</td><td>${esc(u.message)}</td><td>${Object.entries(u.reasons).map(([k, n]) => `${esc(k)}: ${n}`).join('; ')}</td></tr>`)
    .join('');
  const objectiveRow = (label: string, x: PlacementResult['objectives']) =>
    `<tr><td>${esc(label)}</td><td>${x.activeHosts}</td><td>$${x.costPerHour.toFixed(2)}</td><td>${x.imbalance.toFixed(3)}</td><td>${pct(x.peakUtilisation)}</td><td>${x.unplaced ?? 0}</td></tr>`;

  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>NovaCron placement</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em}h3{font-size:1em;margin:0 0 .4em}
small,.note{color:#666;font-weight:normal}
table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
.hosts{display:grid;grid-template-columns:repeat(auto-fill,minmax(22em,1fr));gap:.8em}
.host{border:1px solid #ccc;border-radius:6px;padding:.6em}.host.off{background:#fff4f0}
.bar{display:flex;align-items:center;gap:.4em;margin:.15em 0}.dim{width:4em;color:#555}.pct{width:3em;text-align:right}
.track{flex:1;height:.8em;background:#eee;border-radius:3px;display:flex;overflow:hidden}
.old{background:#9aa5b1}.new{background:#2f80ed}
.vms{margin-top:.4em}.vm{display:inline-block;background:#e8f0fe;border-radius:3px;padding:0 .3em;margin:.1em;font-size:.85em}.vm.old{background:#eceff1}
</style></head><body>
<h1>Placement: ${Object.keys(result.assignments).length} of ${request.vms.length} VMs placed</h1>
<p>${o.activeHosts} active hosts · $${o.costPerHour.toFixed(2)}/h · imbalance ${o.imbalance.toFixed(3)} · fullest host ${pct(o.peakUtilisation)}${result.weights ? ` · weights ${Object.entries(result.weights).filter(([, w]) => w > 0).map(([k, w]) => `${esc(k)} ${w}`).join(', ')}` : ''}</p>
<h2>Objectives and alternatives</h2>
<table><tr><th></th><th>active hosts</th><th>cost</th><th>imbalance</th><th>fullest host</th><th>unplaced</th></tr>${objectiveRow('chosen', o)}${result.alternatives.map((a) => objectiveRow(a.label, a.objectives)).join('')}</table>
<h2>Hosts</h2>
<p class="note"><span class="vm old">grey</span> ran already · <span class="vm">blue</span> placed now; bars show each dimension's use after placement, overcommit included.</p>
<div class="hosts">${hostBlocks.join('')}</div>
${result.unplaced.length ? `<h2>Unplaced VMs</h2><table><tr><th>VM</th><th>why</th><th>hosts ruled out, by rule</th></tr>${unplaced}</table>` : ''}
<h2>Why each VM went where it went</h2>
<table><tr><th>VM</th><th>host</th><th>reason</th><th>scores</th></tr>${explanations}</table>
</body></html>
`;
}

const DIMS = [
  ['cpu', 'cpu', 'cpu'],
  ['memoryMiB', 'memory', 'memory'],
  ['diskGiB', 'disk', 'disk'],
  ['gpu', 'gpu', undefined],
] as const;

function isActive(h: Host): boolean {
  return h.allocated.cpu > 0 || h.allocated.memoryMiB > 0;
}

function fmt(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

function pct(n: number | undefined): string {
  return n === undefined ? '-' : `${Math.round(n * 100)}%`;
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}
