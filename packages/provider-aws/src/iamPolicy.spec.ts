import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * The IAM policy docs/aws.md documents is "what the provider calls, nothing more": every
 * EC2 and S3 command the provider's source sends is allowed by some statement, and every
 * action the policy lists is one the provider calls.
 */
const here = dirname(fileURLToPath(import.meta.url));
const docs = readFileSync(join(here, '../../../docs/aws.md'), 'utf8');

interface Statement {
  readonly Sid: string;
  readonly Action: string | readonly string[];
  readonly Resource: string | readonly string[];
  readonly Condition?: Record<string, Record<string, string | readonly string[]>>;
}

function documentedPolicy(): readonly Statement[] {
  const section = docs.slice(docs.indexOf('## Permissions'));
  const json = /```json\n([\s\S]*?)\n```/.exec(section)?.[1];
  if (!json) throw new Error('docs/aws.md: no json block under "## Permissions"');
  return (JSON.parse(json) as { Statement: Statement[] }).Statement;
}

const list = (v: string | readonly string[]): readonly string[] => (typeof v === 'string' ? [v] : v);

/** S3 calls by the IAM action that allows them (multipart uploads are s3:PutObject, HEAD is s3:GetObject). */
const S3_ACTION: Record<string, string> = {
  HeadObject: 's3:GetObject', GetObject: 's3:GetObject', CreateMultipartUpload: 's3:PutObject', UploadPart: 's3:PutObject',
  CompleteMultipartUpload: 's3:PutObject', PutObject: 's3:PutObject', AbortMultipartUpload: 's3:AbortMultipartUpload', DeleteObject: 's3:DeleteObject',
};

/** The IAM actions behind every `new XCommand(` in the provider's source (tests and the fake left out). */
function actionsCalled(): Map<string, string[]> {
  const files = readdirSync(here, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.spec.ts') && !f.startsWith('testing') && !f.includes('generated'));
  const called = new Map<string, string[]>();
  for (const file of files) {
    for (const [, command] of readFileSync(join(here, file), 'utf8').matchAll(/new (\w+)Command\(/g)) {
      const action = S3_ACTION[command!] ?? `ec2:${command}`;
      called.set(action, [...(called.get(action) ?? []), file]);
    }
  }
  return called;
}

describe('the IAM policy in docs/aws.md', () => {
  const policy = documentedPolicy();
  const allowed = new Set(policy.flatMap((s) => list(s.Action)));

  it('allows every call the provider makes', () => {
    const called = actionsCalled();
    expect(called.size).toBeGreaterThan(30);
    const missing = [...called].filter(([action]) => !allowed.has(action)).map(([action, files]) => `${action} (${[...new Set(files)].join(', ')})`);
    expect(missing).toEqual([]);
  });

  it('lists no action the provider does not call', () => {
    const called = actionsCalled();
    expect([...allowed].filter((a) => !called.has(a))).toEqual([]);
  });

  it('lets NovaCron change, detach and delete only network interfaces that carry the fleet tag, and create them only with it', () => {
    const statementsFor = (action: string) => policy.filter((s) => list(s.Action).includes(action));
    for (const action of ['ec2:DetachNetworkInterface', 'ec2:DeleteNetworkInterface', 'ec2:AttachNetworkInterface', 'ec2:ModifyNetworkInterfaceAttribute']) {
      for (const s of statementsFor(action)) expect(s.Condition?.['StringLike']?.['aws:ResourceTag/novacron:fleet'], `${s.Sid}: ${action}`).toBe('*');
    }
    const creates = statementsFor('ec2:CreateNetworkInterface');
    const onInterface = creates.filter((s) => list(s.Resource).some((r) => r.includes(':network-interface/')));
    expect(onInterface.length).toBeGreaterThan(0);
    for (const s of onInterface) expect(s.Condition?.['StringLike']?.['aws:RequestTag/novacron:fleet'], s.Sid).toBe('*');
    const tagAtCreation = policy.find((s) => s.Sid === 'TagWhatNovaCronMakes');
    expect(list(tagAtCreation?.Condition?.['StringEquals']?.['ec2:CreateAction'] ?? [])).toContain('CreateNetworkInterface');
  });
});
