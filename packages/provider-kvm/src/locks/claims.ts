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
 *
 * A claim file is `<fleet> <cpu> <memMiB> <diskGiB> <epoch> <token>`, `<token>` naming the
 * process. It is taken atomically (written whole to a temporary file, then hard-linked to
 * its name: `ln` fails when the name exists, whatever the shell, with or without the lock,
 * and a reader never sees half a claim), so a live claim of another process is never
 * overwritten: a rival create sees it, backs off, and its release (which removes only a
 * claim carrying its own token) leaves it in place. Only an expired claim (`<epoch>` at
 * least `CLAIM_TTL_SEC` ago, or unreadable) is replaced.
 */
export const CLAIM_TTL_SEC = 900;

export interface Claim {
  readonly name: string;
  readonly fleet: string;
  readonly resources: Resources;
  readonly token: string;
  readonly ageSec: number;
}

/**
 * Takes this claim on its name unless another process holds a live one (see above; a claim
 * of this process's own token is renewed), then prints `now <epoch>` and the host's claims
 * (`C name fleet cpu memMiB diskGiB epoch token`) but the one it holds: a rival's claim on
 * the name, when there is one, is among them.
 */
export function claimScript(virsh: Virsh, lockDir: string | undefined, claim: Omit<Claim, 'ageSec'> | undefined): string {
  const q = (s: string) => virsh.quote(s);
  return [
    lockDirScript(virsh, lockDir),
    takeLockScript(virsh, 'host', 120),
    `find "$L/claims" -type f -mmin +${Math.ceil(CLAIM_TTL_SEC / 60)} -exec rm -f {} + 2>/dev/null || true`,
    `nc_now=$(date +%s); echo "now $nc_now"; nc_mine=`,
    ...(claim ? takeClaimLines(q, claim) : []),
    `for f in "$L/claims"/*; do [ "$f" != "$nc_mine" ] && [ -f "$f" ] && printf 'C %s %s\\n' "\${f##*/}" "$(cat "$f")"; done; true`,
  ].join('\n');
}

/**
 * Links the claim, written whole to a temporary file (a dot file: never listed), to its
 * name. When the name is taken: renewed if the claim there is this process's, replaced if
 * it expired, else left alone (a few rounds: without the lock, a claim may come and go
 * meanwhile). Sets `nc_mine` to the claim's path when this process holds it.
 */
function takeClaimLines(q: (s: string) => string, claim: Omit<Claim, 'ageSec'>): string[] {
  const { cpu, memoryMiB, diskGiB } = claim.resources;
  return [
    `nc_c="$L/claims/"${q(claim.name)}; nc_t="$L/claims/."${q(claim.name)}".$$.tmp"`,
    `printf '%s\\n' ${q(`${claim.fleet} ${cpu} ${memoryMiB} ${diskGiB} `)}"$nc_now"${q(` ${claim.token}`)} > "$nc_t" || exit 73`,
    `for nc_i in 1 2 3; do`,
    `  if ln "$nc_t" "$nc_c" 2>/dev/null; then nc_mine=$nc_c; break; fi`,
    `  nc_l=; read -r nc_l 2>/dev/null < "$nc_c"; nc_k=\${nc_l##* }; nc_e=\${nc_l% *}; nc_e=\${nc_e##* }`,
    `  if [ "$nc_k" = ${q(claim.token)} ]; then mv -f "$nc_t" "$nc_c" && nc_mine=$nc_c; break; fi`,
    `  case $nc_e in ''|*[!0-9]*) nc_e=0 ;; esac`,
    `  [ $((nc_now - nc_e)) -ge ${CLAIM_TTL_SEC} ] || break`,
    `  rm -f "$nc_c"`,
    `done`,
    `rm -f "$nc_t"`,
  ];
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

/**
 * Removes this process's claim on a name (after its domain is defined, or when the create
 * failed), and nothing else: a claim carrying another token stays. Under the host's lock, so
 * that an expired claim of this process replaced meanwhile by another's is never removed.
 */
export function releaseScript(virsh: Virsh, lockDir: string | undefined, name: string, token: string): string {
  return [
    lockDirScript(virsh, lockDir),
    takeLockScript(virsh, 'host', 120),
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
