import { describe, expect, it } from 'vitest';
import { renderUserData } from './userData.js';

describe('renderUserData', () => {
  it('passes the user data through when NovaCron adds nothing', () => {
    expect(renderUserData({ userData: '#!/bin/sh\necho hi\n', onChange: 'ignore' }, 's')).toBe('#!/bin/sh\necho hi\n');
    expect(renderUserData(undefined, 's')).toBeUndefined();
  });

  it('renders keys alone as a cloud-config', () => {
    expect(renderUserData({ sshAuthorizedKeys: ['ssh-ed25519 AAAA a@b'], onChange: 'ignore' }, 's', { hostname: 'vm-1' })).toBe(
      '#cloud-config\nhostname: "vm-1"\nssh_authorized_keys:\n  - "ssh-ed25519 AAAA a@b"\n',
    );
  });

  it('keeps the user data untouched in its own part next to the keys', () => {
    const text = renderUserData({ sshAuthorizedKeys: ['k'], userData: '#!/bin/sh\necho hi', onChange: 'ignore' }, 'seed')!;
    expect(text).toContain('boundary="==NOVACRON-seed=="');
    expect(text).toContain('Content-Type: text/x-shellscript; charset="utf-8"\nMIME-Version: 1.0\n\n#!/bin/sh\necho hi\n');
    expect(text.trimEnd().endsWith('--==NOVACRON-seed==--')).toBe(true);
  });
});
