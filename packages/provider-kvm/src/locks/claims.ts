import type { Resources } from '@novacron/core';
import type { Virsh } from '../virsh/Virsh.js';
import { lockDirScript, takeLockScript } from './hostLock.js';

/**
 * Name claims: before a create defines its domain, it records on the target host, under the
 * host's lock, a claim on the VM's name with the resources it will take. Every process
 * creating on that host counts the others' claims as allocated (so two applies never both
 * take the last room), and a name claimed on one host is refused on another (so two
 * processes never make the same VM twice). A claim is dropped once its domain is defined,
 * or after `CLAIM_TTL_SEC` (a crashed process's claim).
 */
export const CLAIM_TTL_SEC = 900;

export interface Claim {
  readonly name: string;
  readonly fleet: string;
  readonly resources: Resources;
  readonly token: string;
  readonly ageSec: number;
}

/** Prints the host's claims (`C name fleet cpu memMiB diskGiB epoch token`, with `now`), then writes this one. */
export function claimScript(virsh: Virsh, lockDir: string | undefined, claim: Omit<Claim, 'ageSec'> | undefined): string {
  const q = (s: string) => virsh.quote(s);
  return [
    lockDirScript(virsh, lockDir),
    takeLockScript(virsh, 'host', 120),
    `find "$L/claims" -type f -mmin +${Math.ceil(CLAIM_TTL_SEC / 60)} -exec rm -f {} + 2>/dev/null || true`,
    `echo "now $(date +%s)"`,
    `for f in "$L/claims"/*; do [ -f "$f" ] && printf 'C %s %s\\n' "\${f##*/}" "$(cat "$f")"; done; true`,
    ...(claim
      ? [`printf '%s\\n' ${q(`${claim.fleet} ${claim.resources.cpu} ${claim.resources.memoryMiB} ${claim.resources.diskGiB} `)}"$(date +%s)"${q(` ${claim.token}`)} > "$L/claims/"${q(claim.name)}`]
      : []),
  ].join('\n');
}

/** The claims the script printed. */
export function parseClaims(text: string): Claim[] {
  const now = Number(/^now (\d+)$/m.exec(text)?.[1] ?? 0);
  const out: Claim[] = [];
  for (const m of text.matchAll(/^C (\S+) (\S+) (\d+) (\d+) (\d+) (\d+) (\S+)$/gm)) {
    out.push({
      name: m[1]!,
      fleet: m[2]!,
      resources: { cpu: Number(m[3]), memoryMiB: Number(m[4]), diskGiB: Number(m[5]), gpu: 0 },
      token: m[7]!,
      ageSec: Math.max(0, now - Number(m[6])),
    });
  }
  return out;
}

/** Removes this process's claim on a name (after its domain is defined, or when the create failed). */
export function releaseScript(virsh: Virsh, lockDir: string | undefined, name: string, token: string): string {
  return [
    lockDirScript(virsh, lockDir),
    `f="$L/claims/"${virsh.quote(name)}`,
    `[ -f "$f" ] && grep -q -- ${virsh.quote(` ${token}`)}'$' "$f" && rm -f "$f"; true`,
  ].join('\n');
}

/** Whether a name is taken on a host: its domain (state printed) or a live claim (printed). */
export function nameProbeScript(virsh: Virsh, lockDir: string | undefined, name: string): string {
  return [
    lockDirScript(virsh, lockDir),
    `echo "now $(date +%s)"`,
    `st=$(${virsh.commandLine(['domstate', name])} 2>/dev/null) && echo "D $st"`,
    `f="$L/claims/"${virsh.quote(name)}; [ -f "$f" ] && printf 'C %s %s\\n' ${virsh.quote(name)} "$(cat "$f")"; true`,
  ].join('\n');
}
