import { Annotations } from 'cdktf';
import { InvalidInputError, type KvmProviderConfig } from '@novacron/core';
import { CloudinitDisk } from '../generated/libvirt/cloudinit-disk/index.js';
import { Domain, type DomainDevicesDisks } from '../generated/libvirt/domain/index.js';
import { LibvirtProvider } from '../generated/libvirt/provider/index.js';
import { Volume, type VolumeBackingStore } from '../generated/libvirt/volume/index.js';
import { renderMetaData, renderUserData } from '../cloudInit.js';
import { libvirtMetadata } from '../ownership.js';
import { libvirtUri } from '../uri.js';
import type { SynthesizedVm, Target } from './types.js';

const GiB = 1024 ** 3;

/**
 * KVM hosts through terraform-provider-libvirt (0.9): one provider alias per host (a
 * `qemu+ssh` URI each), and per VM a copy-on-write root volume over the image's base volume,
 * a cloud-init seed (`libvirt_cloudinit_disk`, uploaded as a volume) and the domain.
 */
export const libvirtTarget: Target<KvmProviderConfig> = ({ scope, fleet, providerName, config, vms, options }) => {
  const providers = new Map(
    config.hosts.map((host) => [
      host.name,
      new LibvirtProvider(scope, `libvirt-${host.name}`, { alias: `${providerName}-${host.name}`, uri: libvirtUri(host, config.ssh) }),
    ]),
  );
  for (const host of config.hosts) {
    const ssh = { ...config.ssh, ...host.ssh };
    if (ssh.passwordEnv) {
      Annotations.of(scope).addWarning(`host "${host.name}": terraform-provider-libvirt takes no SSH password; give it a key (ssh.identityFile) or an agent`);
    }
    if (ssh.jumpHost) {
      Annotations.of(scope).addInfo(`host "${host.name}" is reached through ${ssh.jumpHost}: the URI uses qemu+sshcmd, so put "ProxyJump ${ssh.jumpHost}" for ${host.address} in ~/.ssh/config where terraform runs`);
    }
  }
  const bases = new Map<string, Volume>();
  const made: SynthesizedVm[] = [];
  for (const vm of vms) {
    const where = `providers.${providerName}`;
    const host = config.hosts.find((h) => h.name === vm.host.name);
    const provider = providers.get(vm.host.name);
    if (!host || !provider) {
      throw new InvalidInputError(`VM "${vm.name}" was placed on "${vm.host.id}", which is not among ${where}.hosts`, {
        context: { vm: vm.name, host: vm.host.id, path: `${where}.hosts` },
        hint: 'the inventory must list the hosts the fleet declares',
      });
    }
    const image = config.images[vm.spec.image];
    if (!image) {
      throw new InvalidInputError(`VM "${vm.name}" was placed on KVM provider "${providerName}", which does not declare image "${vm.spec.image}"`, {
        context: { vm: vm.name, path: `${where}.images` },
        hint: `add images.${vm.spec.image} (a base volume or a URL) to ${where}, or keep the group off it with placement.providers`,
      });
    }
    const pool = host.pool ?? config.pool;
    const network = host.network ?? config.network;

    let backingStore: VolumeBackingStore | undefined;
    if (image.url) {
      const key = `${host.name}/${vm.spec.image}`;
      let base = bases.get(key);
      if (!base) {
        base = new Volume(scope, `base-${host.name}-${vm.spec.image}`, {
          provider,
          name: `novacron-base-${vm.spec.image}.${image.format}`,
          pool,
          target: { format: { type: image.format } },
          create: { content: { url: image.url } },
        });
        bases.set(key, base);
      }
      backingStore = { path: base.path, format: { type: image.format } };
    } else if (image.volume) {
      const dir = options.poolPaths[pool];
      if (!dir) {
        throw new InvalidInputError(`image "${vm.spec.image}" is volume "${image.volume}" in pool "${pool}", whose directory is not known`, {
          context: { vm: vm.name, path: `${where}.images.${vm.spec.image}.volume` },
          hint: `pass poolPaths: { ${JSON.stringify(pool)}: '/path/of/the/pool' } to VmFleet`,
        });
      }
      backingStore = { path: `${dir.replace(/\/$/, '')}/${image.volume}`, format: { type: image.format } };
    } else if (!image.kernel) {
      throw new InvalidInputError(`image "${vm.spec.image}" of ${where} has neither a volume, a url nor a kernel`, {
        context: { vm: vm.name, path: `${where}.images.${vm.spec.image}` },
      });
    }

    const root = new Volume(scope, `${vm.name}-root`, {
      provider,
      name: `${vm.name}-root.qcow2`,
      pool,
      capacity: vm.resources.diskGiB * GiB,
      target: { format: { type: 'qcow2' } },
      ...(backingStore ? { backingStore } : {}),
    });
    const disks: DomainDevicesDisks[] = [
      { source: { volume: { pool, volume: root.name } }, target: { dev: 'vda', bus: 'virtio' }, driver: { name: 'qemu', type: 'qcow2' } },
    ];
    if (!image.kernel) {
      // Cloud images configure themselves from a NoCloud seed; direct-kernel guests have none.
      const seed = new CloudinitDisk(scope, `${vm.name}-cloudinit`, {
        provider,
        name: `${vm.name}-cloudinit`,
        userData: renderUserData(vm.spec.cloudInit, vm.name) ?? '#cloud-config\n{}\n',
        metaData: renderMetaData(vm.name),
      });
      const seedVolume = new Volume(scope, `${vm.name}-seed`, {
        provider,
        name: `${vm.name}-cloudinit.iso`,
        pool,
        create: { content: { url: seed.path } },
      });
      disks.push({ device: 'cdrom', readOnly: true, source: { volume: { pool, volume: seedVolume.name } }, target: { dev: 'sda', bus: 'sata' } });
    }
    if (vm.resources.gpu > 0) {
      Annotations.of(scope).addWarning(`VM "${vm.name}" asks for ${vm.resources.gpu} gpu(s); gpu passthrough is not synthesized for libvirt`);
    }
    const domain = new Domain(scope, vm.name, {
      provider,
      name: vm.name,
      type: config.domainType,
      memory: vm.resources.memoryMiB,
      memoryUnit: 'MiB',
      vcpu: vm.resources.cpu,
      running: true,
      autostart: true,
      description: `NovaCron fleet ${fleet.name}, group ${vm.group}`,
      metadata: { xml: libvirtMetadata(fleet.name, vm) },
      os: { type: 'hvm', ...(image.kernel ? { kernel: image.kernel, ...(image.initrd ? { initrd: image.initrd } : {}), ...(image.cmdline ? { cmdline: image.cmdline } : {}) } : {}) },
      // The group's NICs in order, else one virtio NIC on the host's network (as the KVM provider makes them).
      devices: { disks, interfaces: (vm.spec.nics ?? [{ network }]).map((nic) => ({ model: { type: nic.model ?? 'virtio' }, source: { network: { network: nic.network } } })) },
    });
    made.push({ name: vm.name, provider: providerName, host: vm.host.id, resource: domain });
  }
  return made;
};
