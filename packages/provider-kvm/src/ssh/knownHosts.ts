import { createHash, createHmac, randomBytes } from 'node:crypto';

/**
 * OpenSSH known_hosts, read the way ssh(1) reads it: plain host patterns (comma lists,
 * `*`/`?` wildcards, `!` negation, `[host]:port` for other ports) and hashed entries
 * (`|1|base64(salt)|base64(HMAC-SHA1(salt, host))`). `@revoked` lines refuse a key;
 * `@cert-authority` lines are skipped (host certificates are not supported).
 */
export interface KnownHostEntry {
  readonly file: string;
  readonly line: number;
  readonly marker?: '@revoked' | '@cert-authority';
  readonly hosts: { readonly kind: 'hashed'; readonly salt: Buffer; readonly hash: Buffer } | { readonly kind: 'patterns'; readonly patterns: readonly string[] };
  readonly keyType: string;
  readonly key: Buffer;
}

export function parseKnownHosts(text: string, file: string): KnownHostEntry[] {
  const out: KnownHostEntry[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const fields = line.split(/\s+/);
    let marker: KnownHostEntry['marker'];
    if (fields[0] === '@revoked' || fields[0] === '@cert-authority') marker = fields.shift() as KnownHostEntry['marker'];
    const [hostField, keyType, keyB64] = fields;
    if (!hostField || !keyType || !keyB64) return; // malformed lines are ignored, as ssh does
    const key = Buffer.from(keyB64, 'base64');
    if (key.length === 0) return;
    let hosts: KnownHostEntry['hosts'];
    if (hostField.startsWith('|1|')) {
      const [, , salt, hash] = hostField.split('|');
      if (!salt || !hash) return;
      hosts = { kind: 'hashed', salt: Buffer.from(salt, 'base64'), hash: Buffer.from(hash, 'base64') };
    } else {
      hosts = { kind: 'patterns', patterns: hostField.split(',') };
    }
    out.push({ file, line: i + 1, ...(marker ? { marker } : {}), hosts, keyType, key });
  });
  return out;
}

/** The name a host is recorded under: `host` on port 22, `[host]:port` otherwise. */
export function knownHostName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

function globMatch(pattern: string, text: string): boolean {
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replaceAll('*', '.*').replaceAll('?', '.')}$`, 'i');
  return re.test(text);
}

export function entryMatches(entry: KnownHostEntry, name: string): boolean {
  if (entry.hosts.kind === 'hashed') {
    const mac = createHmac('sha1', entry.hosts.salt).update(name).digest();
    return mac.length === entry.hosts.hash.length && mac.equals(entry.hosts.hash);
  }
  let matched = false;
  for (const pattern of entry.hosts.patterns) {
    if (pattern.startsWith('!')) {
      if (globMatch(pattern.slice(1), name)) return false; // a negated match vetoes the line
    } else if (globMatch(pattern, name)) {
      matched = true;
    }
  }
  return matched;
}

/** The key type inside an SSH public key blob (its first string). */
export function keyTypeOf(blob: Buffer): string {
  if (blob.length < 4) return '';
  const len = blob.readUInt32BE(0);
  return blob.subarray(4, 4 + len).toString('ascii');
}

/** `SHA256:…` as ssh-keygen -l prints it. */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

export type HostKeyVerdict =
  | { readonly status: 'match'; readonly entry: KnownHostEntry }
  | { readonly status: 'revoked'; readonly entry: KnownHostEntry }
  /** The host is known, with other keys: a changed key (or a man in the middle). */
  | { readonly status: 'mismatch'; readonly known: readonly KnownHostEntry[] }
  | { readonly status: 'unknown' };

export function checkHostKey(entries: readonly KnownHostEntry[], host: string, port: number, key: Buffer): HostKeyVerdict {
  const name = knownHostName(host, port);
  const matching = entries.filter((e) => e.marker !== '@cert-authority' && entryMatches(e, name));
  const revoked = matching.find((e) => e.marker === '@revoked' && e.key.equals(key));
  if (revoked) return { status: 'revoked', entry: revoked };
  const plain = matching.filter((e) => e.marker === undefined);
  const same = plain.find((e) => e.key.equals(key));
  if (same) return { status: 'match', entry: same };
  // A key of another type than those recorded counts as a mismatch too: we ask the server
  // for the recorded types first (see hostKeyAlgorithms), so offering another one means
  // the recorded key is gone. Stricter than ssh's prompt, and never silently trusting.
  if (plain.length > 0) return { status: 'mismatch', known: plain };
  return { status: 'unknown' };
}

/** The key types recorded for a host, to ask the server for those first (as ssh does). */
export function knownKeyTypes(entries: readonly KnownHostEntry[], host: string, port: number): string[] {
  const name = knownHostName(host, port);
  return [...new Set(entries.filter((e) => e.marker === undefined && entryMatches(e, name)).map((e) => e.keyType))];
}

/** A known_hosts line for a newly trusted key; hashed when the file already hashes its names. */
export function formatKnownHostLine(host: string, port: number, key: Buffer, hashed: boolean, salt: Buffer = randomBytes(20)): string {
  const name = knownHostName(host, port);
  const field = hashed ? `|1|${salt.toString('base64')}|${createHmac('sha1', salt).update(name).digest('base64')}` : name;
  return `${field} ${keyTypeOf(key)} ${key.toString('base64')}`;
}
