import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkHostKey, fingerprint, formatKnownHostLine, keyTypeOf, knownHostName, knownKeyTypes, parseKnownHosts } from './knownHosts.js';

// Real keys from ssh-keygen, and hashed lines from `ssh-keygen -H`: the judge is OpenSSH.
const dir = mkdtempSync(join(tmpdir(), 'nc-kh-'));
function keygen(name: string, type = 'ed25519'): { line: string; blob: Buffer } {
  execFileSync('ssh-keygen', ['-q', '-t', type, '-N', '', '-f', join(dir, name)]);
  const pub = readFileSync(join(dir, `${name}.pub`), 'utf8').trim().split(' ');
  return { line: `${pub[0]} ${pub[1]}`, blob: Buffer.from(pub[1]!, 'base64') };
}
const a = keygen('a');
const b = keygen('b');
const c = keygen('c', 'ecdsa');

describe('known_hosts', () => {
  const plain = [
    '# comment',
    `10.0.0.1,web.example ${a.line}`,
    `[10.0.0.2]:2222 ${b.line}`,
    `*.lab,!bad.lab ${c.line}`,
    `@revoked 10.0.0.9 ${b.line}`,
    `@cert-authority *.ca ${a.line}`,
    'garbage',
  ].join('\n');
  const entries = parseKnownHosts(plain, '/kh');

  it('parses plain lines, markers and ignores garbage', () => {
    expect(entries).toHaveLength(5);
    expect(entries[0]).toMatchObject({ line: 2, keyType: 'ssh-ed25519' });
    expect(entries[3]?.marker).toBe('@revoked');
  });

  it('matches by name, port, wildcard and negation', () => {
    expect(checkHostKey(entries, '10.0.0.1', 22, a.blob).status).toBe('match');
    expect(checkHostKey(entries, 'WEB.example', 22, a.blob).status).toBe('match');
    expect(checkHostKey(entries, '10.0.0.2', 2222, b.blob).status).toBe('match');
    expect(checkHostKey(entries, '10.0.0.2', 22, b.blob).status).toBe('unknown');
    expect(checkHostKey(entries, 'x.lab', 22, c.blob).status).toBe('match');
    expect(checkHostKey(entries, 'bad.lab', 22, c.blob).status).toBe('unknown');
  });

  it('reports a changed key as a mismatch with what was known, and revoked keys as revoked', () => {
    const v = checkHostKey(entries, '10.0.0.1', 22, b.blob);
    expect(v.status).toBe('mismatch');
    if (v.status === 'mismatch') expect(v.known.map((e) => e.line)).toEqual([2]);
    expect(checkHostKey(entries, '10.0.0.9', 22, b.blob).status).toBe('revoked');
    expect(checkHostKey(entries, 'x.ca', 22, a.blob).status).toBe('unknown');
  });

  it('reads hashed entries written by ssh-keygen -H', () => {
    const file = join(dir, 'known_hosts');
    writeFileSync(file, `10.77.0.11 ${a.line}\n[10.77.0.12]:2222 ${b.line}\n`);
    execFileSync('ssh-keygen', ['-q', '-H', '-f', file]);
    const hashed = parseKnownHosts(readFileSync(file, 'utf8'), file);
    expect(hashed.every((e) => e.hosts.kind === 'hashed')).toBe(true);
    expect(checkHostKey(hashed, '10.77.0.11', 22, a.blob).status).toBe('match');
    expect(checkHostKey(hashed, '10.77.0.12', 2222, b.blob).status).toBe('match');
    expect(checkHostKey(hashed, '10.77.0.11', 22, b.blob).status).toBe('mismatch');
    expect(checkHostKey(hashed, '10.77.0.13', 22, a.blob).status).toBe('unknown');
  });

  it('writes lines that ssh-keygen -F finds, plain and hashed', () => {
    const file = join(dir, 'written');
    writeFileSync(file, `${formatKnownHostLine('10.1.1.1', 22, a.blob, false)}\n${formatKnownHostLine('10.1.1.2', 2200, b.blob, true)}\n`);
    expect(execFileSync('ssh-keygen', ['-F', '10.1.1.1', '-f', file], { encoding: 'utf8' })).toContain('ssh-ed25519');
    expect(execFileSync('ssh-keygen', ['-F', '[10.1.1.2]:2200', '-f', file], { encoding: 'utf8' })).toContain('ssh-ed25519');
    const back = parseKnownHosts(readFileSync(file, 'utf8'), file);
    expect(checkHostKey(back, '10.1.1.2', 2200, b.blob).status).toBe('match');
  });

  it('knows key types, names and fingerprints as ssh prints them', () => {
    expect(keyTypeOf(c.blob)).toBe('ecdsa-sha2-nistp256');
    expect(knownKeyTypes(entries, '10.0.0.1', 22)).toEqual(['ssh-ed25519']);
    expect(knownHostName('h', 22)).toBe('h');
    expect(knownHostName('h', 2222)).toBe('[h]:2222');
    const printed = execFileSync('ssh-keygen', ['-l', '-f', join(dir, 'a.pub')], { encoding: 'utf8' }).split(' ')[1];
    expect(fingerprint(a.blob)).toBe(printed);
  });
});
