export { renderUserData } from '@novacron/core';

/** NoCloud meta-data: the instance id and hostname cloud-init sets. */
export function renderMetaData(vm: string): string {
  return `instance-id: ${vm}\nlocal-hostname: ${vm}\n`;
}
