import * as pulumi from '@pulumi/pulumi';
import { FleetSpecError, formatPath, snapshotPolicy, type SnapshotPolicy as SnapshotPolicySpec } from '@novacron/core';
import type { z } from 'zod';
import { isPlain, type DeepInput } from './spec.js';

export type SnapshotPolicyArgs = { readonly [K in keyof z.input<typeof snapshotPolicy>]: DeepInput<z.input<typeof snapshotPolicy>[K]> };

/**
 * A snapshot policy as a resource of its own: validated with the fleet model when it is
 * declared (problems name their path, as in a fleet file), normalised with the model's
 * defaults, and shared by the groups that use it (`groups.<g>.snapshots: policy.policy`).
 * The VMs of those groups record it; NovaCron's snapshot scheduler carries it out.
 */
export class SnapshotPolicy extends pulumi.ComponentResource {
  /** The policy with defaults applied, as the fleet spec takes it. */
  readonly policy: pulumi.Output<SnapshotPolicySpec>;
  /** One line for people: kind, schedule, retention. */
  readonly summary: pulumi.Output<string>;

  constructor(name: string, args: SnapshotPolicyArgs, opts?: pulumi.ComponentResourceOptions) {
    super('novacron:index:SnapshotPolicy', name, {}, opts);
    const source = `SnapshotPolicy "${name}"`;
    const validate = (raw: unknown): SnapshotPolicySpec => {
      const parsed = snapshotPolicy.safeParse(raw);
      if (!parsed.success) {
        const problems = parsed.error.issues.map((i) => ({ path: formatPath(i.path), message: i.message })).sort((a, b) => a.path.localeCompare(b.path));
        throw new FleetSpecError(problems, source);
      }
      return parsed.data;
    };
    // Plain arguments fail at once; arguments with outputs as soon as they resolve.
    if (isPlain(args)) validate(args);
    this.policy = pulumi.output(args as unknown as pulumi.Input<Record<string, unknown>>).apply(validate);
    this.summary = this.policy.apply(describeSnapshotPolicy);
    this.registerOutputs({ policy: this.policy, summary: this.summary });
  }
}

/** `incremental backups at "0 3 * * *" (Europe/Berlin), full every 7; keep last 3, daily 7, weekly 4`. */
export function describeSnapshotPolicy(policy: SnapshotPolicySpec): string {
  const kind = policy.kind === 'backup' ? `${policy.incremental ? 'incremental ' : ''}backups` : 'disk snapshots';
  const keep = Object.entries(policy.retention)
    .filter((entry): entry is [string, number] => typeof entry[1] === 'number' && entry[1] > 0)
    .map(([k, n]) => `${k === 'keepLast' ? 'last' : k} ${n}`)
    .join(', ');
  const full = policy.kind === 'backup' && policy.incremental ? `, full every ${policy.fullEvery}` : '';
  const target = policy.target ? ` to ${policy.target}` : '';
  return `${kind}${target} at "${policy.schedule}" (${policy.timezone})${full}; keep ${keep}${policy.verify ? '; verified' : ''}`;
}

