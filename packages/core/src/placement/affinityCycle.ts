/**
 * Finds a cycle of `withGroups` rules between different groups (a → b → a), which no
 * placement order can satisfy: each group would have to wait for the other to be placed
 * first. A group naming itself is not a cycle; it means "keep the group together", and its
 * first VM anchors the rest.
 *
 * Self-contained (no imports) so that both the fleet schema and the placement engine use it.
 * @returns the groups on the cycle, first one repeated at the end, or undefined.
 */
export function findAffinityCycle(edges: ReadonlyMap<string, readonly string[]>): string[] | undefined {
  const state = new Map<string, 1 | 2>(); // 1: on the current path, 2: done
  const path: string[] = [];
  const visit = (group: string): string[] | undefined => {
    state.set(group, 1);
    path.push(group);
    for (const next of edges.get(group) ?? []) {
      if (next === group) continue;
      const seen = state.get(next);
      if (seen === 1) return [...path.slice(path.indexOf(next)), next];
      if (seen === undefined) {
        const found = visit(next);
        if (found) return found;
      }
    }
    path.pop();
    state.set(group, 2);
    return undefined;
  };
  for (const group of [...edges.keys()].sort()) {
    if (state.has(group)) continue;
    const found = visit(group);
    if (found) return found;
  }
  return undefined;
}
