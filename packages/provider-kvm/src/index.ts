import type { KvmProviderConfig, ProviderModule } from '@novacron/core';
import { KvmProvider } from './KvmProvider.js';

export { KvmProvider, assertOwnedOnHost, rootVolumeName, seedVolumeName, vmState, type KvmProviderOptions, type LocatedDomain } from './KvmProvider.js';
export { resolveHosts, parseJumpHost, type KvmHost, type SshEndpoint, type SshAuthSettings } from './config.js';
export type { Transport, ExecRequest, ExecResult } from './transport.js';
export { SshPool, SshConnection, sshError, type SshPoolOptions, type SshPoolStats } from './ssh/SshPool.js';
export { tcpDialer, type Dialer } from './ssh/Dialer.js';
export { HostKeyCheck } from './ssh/hostKeys.js';
export { parseKnownHosts, checkHostKey, fingerprint, formatKnownHostLine, knownHostName, type KnownHostEntry, type HostKeyVerdict } from './ssh/knownHosts.js';
export { Virsh, LIBVIRT_URI, virshCommandLine, splitMarked, type VirshResult, type VirshCallOptions } from './virsh/Virsh.js';
export { VIRSH_ERROR_RULES, virshError, virshMessage, type VirshErrorRule } from './virsh/virshErrors.js';
export { readHostState, type HostState, type DomainView, type HostStateRequest } from './virsh/hostState.js';
export * from './virsh/parsers.js';
export { buildDomainXml, parseDomainXml, serialLogPath, type DomainSpec, type DomainDisk, type DomainInfo, type DomainDiskInfo } from './domain/domainXml.js';
export { NOVACRON_XMLNS, NOVACRON_PREFIX, metadataElement, metadataCommand, readMetadata, type NovaCronMetadata } from './domain/metadata.js';
export { buildSeedIso, seedFiles, type SeedInput } from './cloudinit/seed.js';
export { buildIso9660, type IsoFile, type IsoOptions } from './cloudinit/iso9660.js';
export { ensureImageVolume, type BaseVolume, type ImageConfig } from './images.js';
export { shellQuote, shellCommand } from './shell/shellQuote.js';
export { el, renderXml, escapeAttr, escapeText, type XmlElement } from './xml/XmlBuilder.js';
export { parseXml, child, childrenOf, textOf, type XmlNode } from './xml/parseXml.js';
export { NAME_RULES, assertName, validName } from './names.js';
export { failingTransport, recordingTransport, type RecordedCommand } from './testing.js';
export * from './migration/index.js';

export const providerModule: ProviderModule<KvmProviderConfig> = {
  kind: 'kvm',
  async create(name, config, environment) {
    return new KvmProvider({
      name,
      config,
      cwd: environment.cwd,
      env: environment.env,
      clock: environment.clock,
      ...(environment.log ? { log: environment.log } : {}),
    });
  },
};
