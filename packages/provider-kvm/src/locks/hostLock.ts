import type { Virsh } from '../virsh/Virsh.js';

/**
 * Shell fragments that coordinate every process managing a host (two `novacron apply` runs,
 * a Pulumi update and a CLI run), on the host itself: a lock folder shared by all of them
 * and `flock` on files in it. A lock is held by the script that takes it and released when
 * that script ends, however it ends; a host without `flock` (util-linux) runs unlocked.
 */

/** Sets `L` to the lock folder: the configured one, else /var/lib/libvirt/novacron (root), else a per-user one. */
export function lockDirScript(virsh: Virsh, lockDir: string | undefined): string {
  if (lockDir) return `L=${virsh.quote(lockDir)}; mkdir -p "$L/claims" 2>/dev/null || { echo "error: cannot create the lock folder $L" >&2; exit 73; }`;
  return [
    `L=/var/lib/libvirt/novacron`,
    `if ! { mkdir -p "$L/claims" 2>/dev/null && [ -w "$L/claims" ]; }; then L="\${XDG_RUNTIME_DIR:-/tmp}/novacron-$(id -u)"; mkdir -p "$L/claims"; fi`,
  ].join('\n');
}

/** Takes the lock named `name` (a file in `$L`) on fd 9 for the rest of the script, waiting at most `waitSec`. */
export function takeLockScript(virsh: Virsh, name: string, waitSec = 600): string {
  return [
    `exec 9>"$L/"${virsh.quote(`${name}.lock`)}`,
    `if command -v flock >/dev/null 2>&1; then flock -w ${waitSec} 9 || { echo "error: waited ${waitSec} s for the lock ${name} on this host" >&2; exit 75; }; fi`,
  ].join('\n');
}
