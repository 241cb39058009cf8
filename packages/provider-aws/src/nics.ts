import {
  AttachNetworkInterfaceCommand,
  CreateNetworkInterfaceCommand,
  DeleteNetworkInterfaceCommand,
  DescribeNetworkInterfacesCommand,
  DescribeSubnetsCommand,
  DetachNetworkInterfaceCommand,
  ModifyNetworkInterfaceAttributeCommand,
  type EC2Client,
  type Filter,
  type Instance,
  type NetworkInterface,
  type Tag,
} from '@aws-sdk/client-ec2';
import {
  CapacityExceededError,
  ConflictError,
  diffNics,
  InvalidInputError,
  NovaCronError,
  throwIfAborted,
  UnsupportedError,
  type ErrorContext,
  type NicSpec,
  type OperationContext,
  type VmNic,
  type VmRef,
} from '@novacron/core';
import { chunks } from './coalesce.js';
import { awsErrorCode } from './errors.js';
import { TAG, tagMap } from './tags.js';

/** What a NIC's `network` is on EC2: a subnet id. */
export const EC2_SUBNET = /^subnet-[0-9a-f]{8,17}$/;

/** What the NIC changes need from the provider: its calls (errors mapped), its poll loop and its settings. */
export interface NicOps {
  readonly call: <T>(where: ErrorContext, fn: (ec2: EC2Client) => Promise<T>) => Promise<T>;
  readonly poll: (where: ErrorContext, ctx: OperationContext, check: () => Promise<boolean>) => Promise<void>;
  readonly log: (message: string) => void;
  /** The provider's `securityGroupIds`: the groups of a new ENI when the instance reports none. */
  readonly securityGroupIds: readonly string[] | undefined;
}

/**
 * What it takes to bring an instance's secondary NICs to the declared ones, worked out from
 * the instance's ENIs as they are (so a re-run after an interruption does only what is left)
 * and checked before anything changes.
 */
export interface NicChangePlan {
  readonly instanceId: string;
  readonly ref: VmRef;
  /** NovaCron's ENIs to detach (unless detaching already), wait out until `available`, and delete. */
  readonly detach: readonly NetworkInterface[];
  /** A NIC per subnet to attach: with an ENI of ours an earlier run made and left unattached, else a new one. */
  readonly attach: readonly { readonly subnet: string; readonly reuse?: NetworkInterface }[];
  /** NovaCron's ENIs attached without DeleteOnTermination (a run stopped between attaching and setting it). */
  readonly deleteOnTermination: readonly NetworkInterface[];
  /** NovaCron's ENIs of this VM lying unattached that no declared NIC needs (a run stopped before deleting one). */
  readonly leftovers: readonly NetworkInterface[];
  /** Device indexes the NICs that stay hold. */
  readonly usedIndexes: ReadonlySet<number>;
  /** The security groups a new ENI gets: the instance's own. */
  readonly groups: readonly string[];
}

export function nicPlanIsEmpty(plan: NicChangePlan): boolean {
  return plan.detach.length === 0 && plan.attach.length === 0 && plan.deleteOnTermination.length === 0 && plan.leftovers.length === 0;
}

/**
 * The tags on every ENI NovaCron makes for a VM (at launch and by CreateNetworkInterface): the
 * fleet, for the IAM policy's conditions, and the VM, so that only ENIs made for this VM are
 * ever reused or deleted.
 */
export function interfaceTags(fleet: string, vm: string): Tag[] {
  return [
    { Key: TAG.name, Value: vm },
    { Key: TAG.fleet, Value: fleet },
    { Key: TAG.vm, Value: vm },
  ];
}

/** An ENI NovaCron made for this VM (it carries the VM's fleet and name). */
export function isOurInterface(eni: NetworkInterface, ref: VmRef): boolean {
  const tags = tagMap(eni.TagSet);
  return tags.get(TAG.fleet) === ref.fleet && tags.get(TAG.vm) === ref.name;
}

const ATTACHED = new Set(['attaching', 'attached']);

/**
 * Checks a NIC change and works out its steps; makes no change. Refused, each with the field
 * path: a network that is no subnet id, a subnet that does not exist or lies in another zone
 * than the instance (an ENI attaches only within its zone), a change that would detach the
 * primary interface (device 0 belongs to the instance: the core plans a replacement for it),
 * and an interface to remove that NovaCron did not make (it is never detached or deleted).
 */
export async function planNicChanges(ops: NicOps, instance: Instance, want: readonly NicSpec[], ref: VmRef, where: ErrorContext, signal?: AbortSignal): Promise<NicChangePlan> {
  const id = instance.InstanceId!;
  const zone = instance.Placement?.AvailabilityZone ?? '';
  const group = tagMap(instance.Tags).get(TAG.group) || '<group>';
  const pathOf = (network: string) => `groups.${group}.nics[${Math.max(0, want.findIndex((n) => n.network === network))}].network`;

  const notSubnet = want.filter((n) => !EC2_SUBNET.test(n.network));
  if (notSubnet.length > 0) {
    throw new InvalidInputError(`${notSubnet.map((n) => `${pathOf(n.network)}: "${n.network}" is not an EC2 subnet id`).join('; ')}; nothing was changed`, {
      context: { ...where, path: pathOf(notSubnet[0]!.network) },
      hint: `on EC2 each NIC names a subnet (subnet-0123abcd…) in the VM's zone (${zone})`,
    });
  }

  const onInstance = await describeInterfaces(ops, [{ Name: 'attachment.instance-id', Values: [id] }], where, signal);
  const attached = onInstance.filter((e) => ATTACHED.has(e.Attachment?.Status ?? '')).sort((a, b) => (a.Attachment?.DeviceIndex ?? 0) - (b.Attachment?.DeviceIndex ?? 0));
  // Detached by an earlier run but not gone yet: ours are waited out and deleted; others go their own way.
  const detaching = onInstance.filter((e) => e.Attachment?.Status === 'detaching');
  const current: VmNic[] = attached.map((e) => ({ network: e.SubnetId ?? '', id: e.NetworkInterfaceId! }));
  const byId = new Map(attached.map((e) => [e.NetworkInterfaceId!, e]));
  // EC2 reports no NIC model, so a declared model never differs (creation ignores it too).
  const diff = diffNics(want, current);
  const gone = diff.detach.map((n) => byId.get(n.id!)!);

  const primary = attached.find((e) => e.Attachment?.DeviceIndex === 0);
  if (primary && gone.includes(primary)) {
    throw new UnsupportedError(`VM "${ref.name}" (${id}) would lose its primary NIC (${primary.NetworkInterfaceId} in ${primary.SubnetId}); EC2 cannot detach device 0; nothing was changed`, {
      context: { ...where, path: `groups.${group}.nics` },
      hint: `keep ${primary.SubnetId} among groups.${group}.nics, or let the plan replace the VM (it does when the primary NIC changes)`,
    });
  }
  const foreign = gone.filter((e) => !isOurInterface(e, ref));
  if (foreign.length > 0) {
    throw new ConflictError(
      `VM "${ref.name}" (${id}) has network interface(s) NovaCron did not make that groups.${group}.nics no longer lists: ${foreign.map((e) => `${e.NetworkInterfaceId} in ${e.SubnetId} (device ${e.Attachment?.DeviceIndex})`).join(', ')}; NovaCron never detaches or deletes those; nothing was changed`,
      {
        context: { ...where, path: `groups.${group}.nics` },
        hint: `declare their subnets in groups.${group}.nics, detach them yourself, or tag them ${TAG.fleet}=${ref.fleet} and ${TAG.vm}=${ref.name} to let NovaCron remove them`,
      },
    );
  }

  const subnets = [...new Set(diff.attach.map((n) => n.network))];
  if (subnets.length > 0) {
    const found = new Map<string, string>();
    for (const part of chunks(subnets, 200)) {
      const out = await ops.call(where, (ec2) => ec2.send(new DescribeSubnetsCommand({ Filters: [{ Name: 'subnet-id', Values: [...part] }] }), { abortSignal: signal }));
      for (const s of out.Subnets ?? []) if (s.SubnetId) found.set(s.SubnetId, s.AvailabilityZone ?? '');
    }
    const problems = subnets.flatMap((s) => {
      const at = found.get(s);
      if (at === undefined) return [{ subnet: s, message: `${pathOf(s)}: subnet ${s} does not exist (or these credentials cannot see it)` }];
      if (at !== zone) return [{ subnet: s, message: `${pathOf(s)}: subnet ${s} is in ${at}, not in ${zone} where VM "${ref.name}" (${id}) runs` }];
      return [];
    });
    if (problems.length > 0) {
      throw new InvalidInputError(`${problems.map((p) => p.message).join('; ')}; nothing was changed`, {
        context: { ...where, path: pathOf(problems[0]!.subnet) },
        hint: `an ENI attaches only to an instance in its own zone: name subnets of ${zone} (pin the group with placement.zones when its subnets are in one zone)`,
      });
    }
  }

  const spare = await describeInterfaces(ops, [
    { Name: `tag:${TAG.fleet}`, Values: [ref.fleet] },
    { Name: `tag:${TAG.vm}`, Values: [ref.name] },
    { Name: 'status', Values: ['available'] },
  ], where, signal);
  const taken = new Set<string>();
  const attach = subnets.length === 0 ? [] : diff.attach.map((n) => {
    const reuse = spare.find((e) => e.SubnetId === n.network && !taken.has(e.NetworkInterfaceId!) && isOurInterface(e, ref));
    if (reuse) taken.add(reuse.NetworkInterfaceId!);
    return { subnet: n.network, ...(reuse ? { reuse } : {}) };
  });
  const staying = attached.filter((e) => !gone.includes(e));
  const instanceGroups = (instance.SecurityGroups ?? []).map((g) => g.GroupId).filter((g): g is string => g !== undefined);
  return {
    instanceId: id,
    ref,
    detach: [...gone, ...detaching.filter((e) => isOurInterface(e, ref))],
    attach,
    deleteOnTermination: staying.filter((e) => e.Attachment?.DeviceIndex !== 0 && e.Attachment?.DeleteOnTermination !== true && isOurInterface(e, ref)),
    leftovers: spare.filter((e) => !taken.has(e.NetworkInterfaceId!) && isOurInterface(e, ref)),
    usedIndexes: new Set([...staying, ...detaching.filter((e) => !isOurInterface(e, ref))].map((e) => e.Attachment?.DeviceIndex ?? 0)),
    groups: instanceGroups.length > 0 ? instanceGroups : [...(ops.securityGroupIds ?? [])],
  };
}

/** Detaches NovaCron's interfaces the VM no longer declares, waits until they are `available`, and deletes them. */
export async function detachInterfaces(ops: NicOps, plan: NicChangePlan, where: ErrorContext, ctx: OperationContext): Promise<void> {
  if (plan.detach.length === 0) return;
  for (const eni of plan.detach) {
    throwIfAborted(ctx.signal, where);
    // Never an ENI of someone else's: the plan refused those; this guards the invariant.
    if (!isOurInterface(eni, plan.ref)) throw new ConflictError(`network interface ${eni.NetworkInterfaceId} was not made by NovaCron for VM "${plan.ref.name}"`, { context: where });
    const attachment = eni.Attachment;
    if (!attachment?.AttachmentId || !ATTACHED.has(attachment.Status ?? '')) continue;
    ctx.onProgress?.({ operation: 'resize', phase: 'nics', message: `${plan.instanceId}: detach ${eni.NetworkInterfaceId} (${eni.SubnetId}, device ${attachment.DeviceIndex})` });
    try {
      await ops.call(where, (ec2) => ec2.send(new DetachNetworkInterfaceCommand({ AttachmentId: attachment.AttachmentId! }), { abortSignal: ctx.signal }));
    } catch (error) {
      if (causeCode(error) !== 'InvalidAttachmentID.NotFound') throw error;
    }
  }
  const ids = plan.detach.map((e) => e.NetworkInterfaceId!);
  await ops.poll({ ...where, operation: `${where.operation ?? 'resize'} (NIC detach)` }, ctx, async () => {
    const now = await describeInterfaces(ops, [{ Name: 'network-interface-id', Values: ids }], where, ctx.signal);
    return now.every((e) => e.Status === 'available');
  });
  for (const id of ids) await deleteInterface(ops, id, where, ctx.signal);
}

/**
 * Attaches a NIC per subnet at the next free device index: an ENI of ours an earlier run made
 * and left unattached, else a new one (CreateNetworkInterface with the instance's security
 * groups and NovaCron's tags). DeleteOnTermination is set on each, so it goes with the
 * instance like those made at launch. A failed attach deletes the ENI it was attaching
 * before the error is reported. Then waits until every attachment is `attached`, and deletes
 * NovaCron's unattached ENIs of this VM that nothing needs.
 */
export async function attachInterfaces(ops: NicOps, plan: NicChangePlan, where: ErrorContext, ctx: OperationContext): Promise<void> {
  const used = new Set(plan.usedIndexes);
  const attachments: { eni: string; attachment: string }[] = [];
  for (const { subnet, reuse } of plan.attach) {
    throwIfAborted(ctx.signal, where);
    let eni = reuse?.NetworkInterfaceId;
    if (!eni) {
      ctx.onProgress?.({ operation: 'resize', phase: 'nics', message: `${plan.instanceId}: create a network interface in ${subnet}` });
      const made = await ops.call(where, (ec2) =>
        ec2.send(
          new CreateNetworkInterfaceCommand({
            SubnetId: subnet,
            Description: `NovaCron NIC of ${plan.ref.name} (fleet ${plan.ref.fleet})`,
            ...(plan.groups.length > 0 ? { Groups: [...plan.groups] } : {}),
            TagSpecifications: [{ ResourceType: 'network-interface', Tags: interfaceTags(plan.ref.fleet, plan.ref.name) }],
          }),
          { abortSignal: ctx.signal },
        ),
      );
      eni = made.NetworkInterface?.NetworkInterfaceId;
      if (!eni) throw new NovaCronError('Provider', 'server', 'EC2 CreateNetworkInterface answered without a network interface', { context: where });
    }
    let index = 1;
    while (used.has(index)) index++;
    const id = eni;
    ctx.onProgress?.({ operation: 'resize', phase: 'nics', message: `${plan.instanceId}: attach ${id} (${subnet}) at device ${index}` });
    let attachment: string | undefined;
    try {
      attachment = (await ops.call(where, (ec2) => ec2.send(new AttachNetworkInterfaceCommand({ InstanceId: plan.instanceId, NetworkInterfaceId: id, DeviceIndex: index }), { abortSignal: ctx.signal }))).AttachmentId;
    } catch (error) {
      await deleteQuietly(ops, id, where);
      if (causeCode(error) === 'AttachmentLimitExceeded') {
        throw new CapacityExceededError(`VM "${plan.ref.name}" (${plan.instanceId}) takes no more network interfaces: ${error instanceof Error ? error.message : String(error)}`, {
          context: where,
          cause: error,
          hint: 'each instance type takes a fixed number of network interfaces: declare fewer NICs or a larger size (the instance type)',
        });
      }
      throw error;
    }
    if (!attachment) throw new NovaCronError('Provider', 'server', `EC2 AttachNetworkInterface answered without an attachment id for ${id}`, { context: where });
    used.add(index);
    attachments.push({ eni: id, attachment });
    await setDeleteOnTermination(ops, id, attachment, where, ctx.signal);
  }
  for (const eni of plan.deleteOnTermination) {
    await setDeleteOnTermination(ops, eni.NetworkInterfaceId!, eni.Attachment!.AttachmentId!, where, ctx.signal);
  }
  if (attachments.length > 0) {
    const ids = attachments.map((a) => a.eni);
    await ops.poll({ ...where, operation: `${where.operation ?? 'resize'} (NIC attach)` }, ctx, async () => {
      const now = await describeInterfaces(ops, [{ Name: 'network-interface-id', Values: ids }], where, ctx.signal);
      return ids.every((id) => now.find((e) => e.NetworkInterfaceId === id)?.Attachment?.Status === 'attached');
    });
  }
  for (const eni of plan.leftovers) await deleteInterface(ops, eni.NetworkInterfaceId!, where, ctx.signal);
}

async function setDeleteOnTermination(ops: NicOps, eni: string, attachment: string, where: ErrorContext, signal: AbortSignal | undefined): Promise<void> {
  await ops.call(where, (ec2) =>
    ec2.send(new ModifyNetworkInterfaceAttributeCommand({ NetworkInterfaceId: eni, Attachment: { AttachmentId: attachment, DeleteOnTermination: true } }), { abortSignal: signal }),
  );
}

async function deleteInterface(ops: NicOps, id: string, where: ErrorContext, signal: AbortSignal | undefined): Promise<void> {
  try {
    await ops.call(where, (ec2) => ec2.send(new DeleteNetworkInterfaceCommand({ NetworkInterfaceId: id }), { abortSignal: signal }));
  } catch (error) {
    if (causeCode(error) !== 'InvalidNetworkInterfaceID.NotFound') throw error;
  }
}

/** Best effort after a failed attach: the attach's error is the one to report; a re-run finds and reuses an ENI left behind. */
async function deleteQuietly(ops: NicOps, id: string, where: ErrorContext): Promise<void> {
  try {
    await deleteInterface(ops, id, where, undefined);
  } catch (error) {
    ops.log(`could not delete network interface ${id} after a failed attach (${error instanceof Error ? error.message : String(error)}); the next run reuses or deletes it`);
  }
}

/** The EC2 error code behind an error, mapped (the provider's calls wrap it as the cause) or not. */
function causeCode(error: unknown): string {
  return awsErrorCode(NovaCronError.isInstance(error) && error.cause !== undefined ? error.cause : error);
}

/** DescribeNetworkInterfaces with filters, every page. */
async function describeInterfaces(ops: NicOps, filters: Filter[], where: ErrorContext, signal: AbortSignal | undefined): Promise<NetworkInterface[]> {
  const out: NetworkInterface[] = [];
  let token: string | undefined;
  do {
    const page = await ops.call(where, (ec2) =>
      ec2.send(new DescribeNetworkInterfacesCommand({ Filters: filters, MaxResults: 1000, ...(token ? { NextToken: token } : {}) }), { abortSignal: signal }),
    );
    out.push(...(page.NetworkInterfaces ?? []));
    token = page.NextToken;
  } while (token);
  return out;
}
