import type { NicSpec } from '../model/fleet.js';
import type { VmNic } from '../model/records.js';

/**
 * What it takes to turn a VM's NICs into the declared ones. NICs are matched by network
 * (and model, where both sides name one), never by position: reordering the list changes
 * nothing, and a re-run after an interrupted change finds what is already done.
 */
export interface NicDiff {
  /** Declared NICs no current NIC stands for: attached. */
  readonly attach: readonly NicSpec[];
  /** Current NICs no declared NIC stands for: detached. */
  readonly detach: readonly VmNic[];
  /** Current NICs on a declared network whose model differs: detached and attached again with the new model (same MAC). */
  readonly remodel: readonly { readonly from: VmNic; readonly to: NicSpec }[];
  /** Declared NICs matched to current ones, as pairs. */
  readonly kept: readonly { readonly from: VmNic; readonly to: NicSpec }[];
}

/** A model is compared only when both sides name one: an undeclared model is the provider's default, never drift. */
function sameModel(want: NicSpec, have: VmNic): boolean {
  return want.model === undefined || have.model === undefined || want.model === have.model;
}

/** Matches declared NICs to current ones: first by network and model, then by network alone (a model change). */
export function diffNics(want: readonly NicSpec[], have: readonly VmNic[]): NicDiff {
  const used = new Set<number>();
  const kept: { from: VmNic; to: NicSpec }[] = [];
  const unmatched: NicSpec[] = [];
  for (const nic of want) {
    const i = have.findIndex((h, j) => !used.has(j) && h.network === nic.network && sameModel(nic, h));
    if (i < 0) {
      unmatched.push(nic);
      continue;
    }
    used.add(i);
    kept.push({ from: have[i]!, to: nic });
  }
  const remodel: { from: VmNic; to: NicSpec }[] = [];
  const attach: NicSpec[] = [];
  for (const nic of unmatched) {
    const i = have.findIndex((h, j) => !used.has(j) && h.network === nic.network);
    if (i < 0) {
      attach.push(nic);
      continue;
    }
    used.add(i);
    remodel.push({ from: have[i]!, to: nic });
  }
  const detach = have.filter((_, j) => !used.has(j));
  return { attach, detach, remodel, kept };
}

export function nicDiffIsEmpty(diff: NicDiff): boolean {
  return diff.attach.length === 0 && diff.detach.length === 0 && diff.remodel.length === 0;
}

/** `lan` or `lan(e1000e)`. */
export function showNic(nic: NicSpec | VmNic): string {
  return nic.model ? `${nic.network}(${nic.model})` : nic.network;
}

/** What a diff does, for a plan's reason: `attach lan2(virtio); detach lan3 52:54:00:…; lan model virtio → e1000e`. */
export function describeNicDiff(diff: NicDiff): string {
  const mac = (n: VmNic) => (n.mac ? ` ${n.mac}` : n.id ? ` ${n.id}` : '');
  return [
    ...diff.attach.map((n) => `attach ${showNic(n)}`),
    ...diff.detach.map((n) => `detach ${showNic(n)}${mac(n)}`),
    ...diff.remodel.map((r) => `${r.from.network}${mac(r.from)} model ${r.from.model ?? 'default'} → ${r.to.model ?? 'default'}`),
  ].join(', ');
}
