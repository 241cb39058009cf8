import {
  cloudInit,
  groupSpec,
  labels,
  MAX_FLEET_NAME,
  MAX_GROUP_NAME,
  migrationPolicy,
  name,
  providerConfig,
  snapshotPolicy,
  vmName,
  type Capabilities,
  type CloudInit,
  type GroupSpec,
  type MigrationPolicy,
  type NicSpec,
  type ProviderConfig,
  type Resources,
  type SnapshotPolicy,
  type VmNic,
} from '@novacron/core';
import { z } from 'zod';

/** What Pulumi passes for a value it does not know yet (a preview before a dependency exists). */
export const UNKNOWN = '04da6b54-80e4-46f7-96ec-b56ff0331ba9';

export function isUnknown(value: unknown): boolean {
  if (value === UNKNOWN) return true;
  if (Array.isArray(value)) return value.some(isUnknown);
  if (value !== null && typeof value === 'object') return Object.values(value).some(isUnknown);
  return false;
}

const resources = z.strictObject({
  cpu: groupSpec.shape.cpu,
  memoryMiB: z.number().int().min(16),
  diskGiB: z.number().int().min(1),
  gpu: z.number().int().min(0),
});

const capabilities = z.record(z.string(), z.boolean());

/**
 * The inputs of one `novacron:index:Vm`: everything a provider needs to make the VM, the
 * placement decision, and the policies recorded with it. VmFleet fills them from the fleet
 * spec; `check` validates them with the same model pieces the fleet spec uses.
 */
export const vmInputs = z
  .object({
    fleet: name('fleet', MAX_FLEET_NAME),
    group: name('group', MAX_GROUP_NAME),
    index: z.number().int().min(0),
    vmName: z.string().min(1),
    providerName: z.string().min(1),
    providerConfig,
    host: z.string().regex(/^[^/]+\/.+$/, 'a host id is "<provider>/<host>"'),
    instanceType: z.string().min(1).optional(),
    resources,
    image: z.string().min(1),
    labels,
    specHash: z.string().min(1),
    cloudInit: cloudInit.optional(),
    /** The group's declared NICs; absent: the provider's default, never compared. */
    nics: groupSpec.shape.nics,
    workload: z.strictObject({ workingSetMiB: z.number().min(0).optional(), dirtyRateMiBps: z.number().min(0).optional() }).optional(),
    migration: migrationPolicy,
    snapshots: snapshotPolicy.optional(),
    /** The group's policy for changes to running VMs (reboots allowed, fallback to replace). */
    changes: groupSpec.shape.changes.optional(),
    /** What the provider could do when the fleet was planned; read from the provider when absent. */
    capabilities: capabilities.optional(),
    /** Environment entries the provider reads credentials from. Always a secret. */
    credentials: z.record(z.string(), z.string()).optional(),
  })
  .superRefine((vm, ctx) => {
    const expected = vmName(vm.fleet, vm.group, vm.index);
    if (vm.vmName !== expected) ctx.addIssue({ code: 'custom', path: ['vmName'], message: `VM names are <fleet>-<group>-<index>: expected "${expected}"` });
    const owner = vm.host.slice(0, vm.host.indexOf('/'));
    if (vm.host.includes('/') && owner !== vm.providerName) {
      ctx.addIssue({ code: 'custom', path: ['host'], message: `host "${vm.host}" belongs to provider "${owner}", not "${vm.providerName}"` });
    }
  });

export interface VmInputs {
  readonly fleet: string;
  readonly group: string;
  readonly index: number;
  readonly vmName: string;
  readonly providerName: string;
  readonly providerConfig: ProviderConfig;
  readonly host: string;
  readonly instanceType?: string;
  readonly resources: Resources;
  readonly image: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly specHash: string;
  readonly cloudInit?: CloudInit;
  readonly nics?: readonly NicSpec[];
  readonly workload?: { readonly workingSetMiB?: number; readonly dirtyRateMiBps?: number };
  readonly migration: MigrationPolicy;
  readonly snapshots?: SnapshotPolicy;
  readonly changes?: GroupSpec['changes'];
  readonly capabilities?: Partial<Capabilities>;
  readonly credentials?: Readonly<Record<string, string>>;
}

/** The last change an update made, kept in state so `pulumi stack output` can say what happened. */
export interface VmLastChange {
  /** A change class (see `classifyVmChange`), or `create`. */
  readonly class: string;
  readonly reasons: readonly string[];
  readonly at: string;
}

/** The outputs: the inputs as the provider reports them now, plus what only the provider knows. */
export interface VmOutputs extends VmInputs {
  readonly vmId: string;
  readonly zone: string;
  readonly addresses: readonly string[];
  readonly state: string;
  /** The VM's NICs as the provider reports them (network, MAC, model): what `nics` is compared with. */
  readonly observedNics?: readonly VmNic[];
  readonly lastChange?: VmLastChange;
}

/** Where each input comes from in the fleet spec, so a failure names the spec path the user wrote. */
function specPath(vm: Partial<VmInputs>, path: readonly PropertyKey[]): string | undefined {
  const group = typeof vm.group === 'string' ? vm.group : '<group>';
  const provider = typeof vm.providerName === 'string' ? vm.providerName : '<provider>';
  const [head, sub] = path;
  switch (head) {
    case 'resources':
      return `groups.${group}.${sub === 'memoryMiB' ? 'memory' : sub === 'diskGiB' ? 'disk' : String(sub ?? '')}`.replace(/\.$/, '');
    case 'image':
    case 'labels':
    case 'cloudInit':
    case 'workload':
      return `groups.${group}.${String(head)}${path.length > 1 ? `.${path.slice(1).map(String).join('.')}` : ''}`;
    case 'migration':
    case 'snapshots':
    case 'changes':
      return `groups.${group}.${String(head)}${path.length > 1 ? `.${path.slice(1).map(String).join('.')}` : ''}`;
    case 'providerConfig':
      return `providers.${provider}${path.length > 1 ? `.${path.slice(1).map(String).join('.')}` : ''}`;
    default:
      return undefined;
  }
}

export interface CheckFailure {
  readonly property: string;
  readonly reason: string;
}

/**
 * Validates a VM's inputs. Values Pulumi does not know yet are left out (they are checked
 * again when they are known). Each failure names the input property and, where the value
 * came from the fleet spec, the spec path.
 */
export function checkVmInputs(news: Record<string, unknown>): { inputs: Record<string, unknown>; failures: CheckFailure[] } {
  const known = Object.fromEntries(Object.entries(news).filter(([key, value]) => !key.startsWith('__') && !isUnknown(value)));
  const unknownKeys = Object.keys(news).filter((key) => !key.startsWith('__') && isUnknown(news[key]));
  const result = vmInputs.safeParse(known);
  if (result.success) return { inputs: news, failures: [] };
  const failures: CheckFailure[] = [];
  for (const issue of result.error.issues) {
    const property = String(issue.path[0] ?? '');
    if (unknownKeys.includes(property)) continue;
    if (issue.code === 'invalid_type' && issue.path.length === 1 && unknownKeys.length > 0 && issue.input === undefined && unknownKeys.includes(property)) continue;
    const where = specPath(known as Partial<VmInputs>, issue.path);
    const reason = issue.code === 'invalid_type' && issue.input === undefined ? `required (${issue.expected})` : issue.message;
    failures.push({ property: issue.path.map(String).join('.') || '(root)', reason: where ? `${where}: ${reason}` : reason });
  }
  return { inputs: news, failures };
}

/** Parses inputs that passed `check` (defaults applied). */
export function parseVmInputs(raw: Record<string, unknown>): VmInputs {
  const { __provider: _provider, ...rest } = raw;
  return vmInputs.parse(rest) as VmInputs;
}
