import * as pulumi from '@pulumi/pulumi';
import { FleetSpecError, formatPath, kvmProviderConfig, name, type SpecProblem } from '@novacron/core';
import type { z } from 'zod';
import { isPlain, type DeepInput } from './spec.js';

const kvmHostSchema = kvmProviderConfig.shape.hosts.element;
type KvmHostInput = z.input<typeof kvmHostSchema>;
/** A KVM host entry of a fleet spec (`providers.<kvm>.hosts[]`). */
export type KvmHostConfig = z.output<typeof kvmHostSchema>;

export type KvmHostArgs = {
  readonly [K in keyof Omit<KvmHostInput, 'name' | 'address'>]?: DeepInput<KvmHostInput[K]>;
} & {
  /** The host's address (name or IP) that SSH reaches. */
  readonly address: pulumi.Input<string>;
  /** The host's name in the fleet (a DNS label). @default the resource name */
  readonly hostName?: string;
  /**
   * The SSH password, for hosts that take one. Kept as a secret; the host config names an
   * environment variable (`passwordEnv`) and `credentials` carries the value to the provider.
   */
  readonly password?: pulumi.Input<string>;
};

const hostNameSchema = name('host', 63);

/**
 * A KVM host's connection settings as a Pulumi resource. `hostConfig` goes into a fleet's
 * `providers.<kvm>.hosts`; `credentials` into `VmFleet`'s `credentials`. The password is
 * never part of the host config (which is stored in the state of every VM): the config names
 * an environment variable, and the secret value travels as a secret beside it.
 */
export class KvmHost extends pulumi.ComponentResource {
  readonly hostName: string;
  /** The environment variable the provider reads the password from, when there is one. */
  readonly passwordEnv: string | undefined;
  /** The host entry for the fleet spec, validated with the fleet model. */
  readonly hostConfig: pulumi.Output<KvmHostConfig>;
  /** libvirt's URI for the host, as `virsh -c` and terraform-provider-libvirt take it. */
  readonly uri: pulumi.Output<string>;
  /** `{ [passwordEnv]: password }`, a secret; empty without a password. */
  readonly credentials: pulumi.Output<Record<string, string>>;

  constructor(name: string, args: KvmHostArgs, opts?: pulumi.ComponentResourceOptions) {
    super('novacron:index:KvmHost', name, {}, opts);
    const source = `KvmHost "${name}"`;
    const hostName = args.hostName ?? name;
    const nameCheck = hostNameSchema.safeParse(hostName);
    if (!nameCheck.success) throw new FleetSpecError([{ path: 'hostName', message: nameCheck.error.issues[0]!.message }], source);
    this.hostName = hostName;
    this.passwordEnv = args.password === undefined ? undefined : passwordEnvFor(hostName);

    const { password, hostName: _hostName, ...rest } = args;
    const passwordEnv = this.passwordEnv;
    const validate = (raw: Record<string, unknown>): KvmHostConfig => {
      const input = { ...raw, name: hostName, ...(passwordEnv ? { ssh: { ...(raw['ssh'] as object | undefined), passwordEnv } } : {}) };
      const parsed = kvmHostSchema.safeParse(input);
      if (!parsed.success) {
        const problems: SpecProblem[] = parsed.error.issues.map((i) => ({ path: formatPath(i.path), message: i.message }));
        throw new FleetSpecError(problems, source);
      }
      return parsed.data;
    };
    // Plain settings fail at once; settings with outputs as soon as they resolve.
    if (isPlain(rest)) validate(rest);
    this.hostConfig = pulumi.output(rest as pulumi.Input<Record<string, unknown>>).apply(validate);
    this.uri = this.hostConfig.apply(libvirtUri);
    const env = this.passwordEnv;
    this.credentials = pulumi.secret(
      password === undefined || env === undefined
        ? pulumi.output({} as Record<string, string>)
        : pulumi.output(password).apply((pw): Record<string, string> => ({ [env]: pw })),
    );
    this.registerOutputs({ hostConfig: this.hostConfig, uri: this.uri, credentials: this.credentials });
  }
}

/** `NOVACRON_SSH_PASSWORD_<HOST>`: the variable a host's password is handed over in. */
export function passwordEnvFor(hostName: string): string {
  return `NOVACRON_SSH_PASSWORD_${hostName.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

/** `qemu+ssh://user@address:port/system?keyfile=…&knownhosts=…`, without any secret. */
export function libvirtUri(host: Pick<KvmHostConfig, 'address' | 'ssh'>): string {
  const ssh = host.ssh ?? {};
  const user = ssh.user ? `${encodeURIComponent(ssh.user)}@` : '';
  const port = ssh.port ? `:${ssh.port}` : '';
  const query = new URLSearchParams();
  if (ssh.identityFile) query.set('keyfile', ssh.identityFile);
  if (ssh.knownHosts) query.set('knownhosts', ssh.knownHosts);
  const q = query.toString();
  return `qemu+ssh://${user}${host.address}${port}/system${q ? `?${q}` : ''}`;
}

