import * as pulumi from '@pulumi/pulumi';
import { FleetSpecError, groupSpec, MAX_FLEET_NAME, MAX_GROUP_NAME, name, type FleetSpecInput, type SpecProblem } from '@novacron/core';

/** A value, or a Pulumi Input of it, all the way down. */
export type DeepInput<T> = T extends string | number | boolean | null | undefined
  ? pulumi.Input<T>
  : T extends readonly (infer U)[]
    ? pulumi.Input<readonly DeepInput<U>[]>
    : T extends object
      ? pulumi.Input<{ readonly [K in keyof T]: DeepInput<T[K]> }>
      : pulumi.Input<T>;

type GroupInput = FleetSpecInput['groups'][string];

/** A group: `count` is a plain number (it decides which resources exist); anything else may be an Input. */
export type GroupSpecArgs = { readonly count: number } & { readonly [K in keyof Omit<GroupInput, 'count'>]: DeepInput<Omit<GroupInput, 'count'>[K]> };

/**
 * The fleet spec of a Pulumi program: the same shape as a fleet file. The fleet's name, the
 * group names and the counts are plain values, because they name the VM resources and
 * Pulumi must know every resource before any value resolves; every other value may be a
 * Pulumi Input (another resource's output, a secret, a promise).
 */
export interface FleetSpecArgs {
  readonly apiVersion?: 'novacron/v1';
  readonly name: string;
  readonly providers: DeepInput<FleetSpecInput['providers']>;
  readonly placement?: DeepInput<NonNullable<FleetSpecInput['placement']>>;
  readonly groups: { readonly [group: string]: GroupSpecArgs };
}

/** The part of a spec that decides which resources exist. */
export interface FleetSkeleton {
  readonly name: string;
  readonly groups: readonly { readonly name: string; readonly count: number }[];
}

const fleetName = name('fleet', MAX_FLEET_NAME);
const groupName = name('group', MAX_GROUP_NAME);

/** Reads the plain part of the spec, or throws a FleetSpecError naming each problem's path. */
export function skeletonOf(spec: FleetSpecArgs, source?: string): FleetSkeleton {
  const problems: SpecProblem[] = [];
  const plain = 'must be a plain value in a Pulumi program: it names the VM resources, which Pulumi must know before any output resolves';
  if (isDeferred(spec)) throw new FleetSpecError([{ path: '', message: `the spec itself ${plain}; pass an object whose other values may be outputs` }], source);
  if (isDeferred(spec.name) || typeof spec.name !== 'string') problems.push({ path: 'name', message: isDeferred(spec.name) ? plain : 'required (string)' });
  else {
    const check = fleetName.safeParse(spec.name);
    if (!check.success) problems.push({ path: 'name', message: check.error.issues[0]!.message });
  }
  const groups: { name: string; count: number }[] = [];
  if (isDeferred(spec.groups)) problems.push({ path: 'groups', message: plain });
  else if (spec.groups === null || typeof spec.groups !== 'object') problems.push({ path: 'groups', message: 'required (record)' });
  else {
    for (const [group, value] of Object.entries(spec.groups)) {
      const at = `groups.${group}`;
      const key = groupName.safeParse(group);
      if (!key.success) problems.push({ path: at, message: key.error.issues[0]!.message });
      if (isDeferred(value)) {
        problems.push({ path: at, message: plain });
        continue;
      }
      const count = (value as { count?: unknown } | null)?.count;
      if (isDeferred(count)) {
        problems.push({ path: `${at}.count`, message: plain });
        continue;
      }
      const parsed = groupSpec.shape.count.safeParse(count);
      if (!parsed.success) {
        problems.push({ path: `${at}.count`, message: count === undefined ? 'required (number)' : parsed.error.issues[0]!.message });
        continue;
      }
      groups.push({ name: group, count: parsed.data });
    }
  }
  if (problems.length > 0) throw new FleetSpecError(problems, source);
  return { name: spec.name, groups };
}

/** An Output or a promise: a value not there yet. */
export function isDeferred(value: unknown): boolean {
  return pulumi.Output.isInstance(value) || (value !== null && typeof value === 'object' && typeof (value as { then?: unknown }).then === 'function');
}

/** True when nothing anywhere in the value is an Output or a promise. */
export function isPlain(value: unknown): boolean {
  if (isDeferred(value)) return false;
  if (Array.isArray(value)) return value.every(isPlain);
  if (value !== null && typeof value === 'object') return Object.values(value).every(isPlain);
  return true;
}
