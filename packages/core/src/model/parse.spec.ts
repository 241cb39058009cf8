import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FleetSpecError, fleetJsonSchema, loadFleetFile, parseFleet, parseFleetText, validateFleet } from '../index.js';
import { simFleet } from '../../../../test/support/fleets.js';

function problemsOf(input: unknown): { path: string; message: string }[] {
  const result = validateFleet(input);
  if (result.ok) throw new Error('expected the fleet to be invalid');
  return result.error.problems.map(({ path, message }) => ({ path, message }));
}

function withGroup(patch: Record<string, unknown>) {
  const fleet = simFleet();
  return { ...fleet, groups: { ...fleet.groups, web: { ...fleet.groups.web, ...patch } } };
}

describe('parseFleet', () => {
  it('normalises sizes written as numbers or with units', () => {
    const fleet = parseFleet(withGroup({ memory: '1.5GiB', disk: '512GiB' }));
    expect(fleet.groups.web).toMatchObject({ memory: 1536, disk: 512 });
    expect(parseFleet(withGroup({ memory: 2048, disk: 20 })).groups.web).toMatchObject({ memory: 2048, disk: 20 });
    expect(parseFleet(withGroup({ memory: '4G', disk: '1T' })).groups.web).toMatchObject({ memory: 4096, disk: 1024 });
    // decimal units are decimal, rounded up to whole MiB / GiB
    expect(parseFleet(withGroup({ memory: '1000MB', disk: '10GB' })).groups.web).toMatchObject({ memory: 954, disk: 10 });
  });

  it('fills defaults for policies and placement', () => {
    const web = parseFleet(simFleet()).groups.web!;
    expect(web.migration).toMatchObject({ mode: 'auto', maxDowntimeMs: 300, autoConverge: true });
    expect(web.placement).toEqual({});
    expect(web.disk).toBe(10);
  });

  it.each([
    ['a negative count', withGroup({ count: -1 }), 'groups.web.count', /too small|>=0/i],
    ['a fractional cpu', withGroup({ cpu: 1.5 }), 'groups.web.cpu', /int/i],
    ['an absurd memory', withGroup({ memory: '900TiB' }), 'groups.web.memory', /too large/],
    ['a tiny memory', withGroup({ memory: '1MiB' }), 'groups.web.memory', /too small/],
    ['a size with an unknown unit', withGroup({ memory: '4XB' }), 'groups.web.memory', /not a size unit/],
    ['a size that is not a size', withGroup({ disk: 'big' }), 'groups.web.disk', /not a size/],
    ['a missing image', withGroup({ image: undefined }), 'groups.web.image', /required/],
    ['an unknown key', withGroup({ cpus: 2 }), 'groups.web.cpus', /unknown key \(did you mean "cpu"\?\)/],
    ['an unknown placement key', withGroup({ placement: { zone: ['a'] } }), 'groups.web.placement.zone', /did you mean "zones"/],
    ['a bad anti-affinity level', withGroup({ placement: { antiAffinity: 'rack' } }), 'groups.web.placement.antiAffinity', /host|zone/],
    ['a bad group name', { ...simFleet(), groups: { Web_1: simFleet().groups.web } }, 'groups.Web_1', /lowercase/],
    ['a bad fleet name', { ...simFleet(), name: '-x' }, 'name', /lowercase/],
    ['an unknown provider type', { ...simFleet(), providers: { lab: { type: 'vmware' } } }, 'providers.lab', /unknown provider type "vmware": expected one of sim, kvm, aws, gcp/],
    ['a provider with no type', { ...simFleet(), providers: { lab: {} } }, 'providers.lab', /needs a "type"/],
    ['a placement naming an unknown provider', withGroup({ placement: { providers: ['aws'] } }), 'groups.web.placement.providers[0]', /unknown provider "aws" \(known: lab\)/],
    ['a rule naming an unknown group', withGroup({ placement: { avoidGroups: [{ group: 'cache' }] } }), 'groups.web.placement.avoidGroups[0].group', /unknown group "cache"/],
    ['a cron with four fields', withGroup({ snapshots: { schedule: '0 3 * *', retention: { keepLast: 1 } } }), 'groups.web.snapshots.schedule', /five fields/],
    ['a retention keeping nothing', withGroup({ snapshots: { schedule: '0 3 * * *', retention: {} } }), 'groups.web.snapshots.retention', /keeps nothing/],
    ['no groups', { ...simFleet(), groups: {} }, 'groups', /at least one group/],
    ['a bad label key', withGroup({ labels: { 'Tier!': 'web' } }), 'groups.web.labels["Tier!"]', /label keys/],
  ])('reports %s with its path', (_what, input, path, message) => {
    const problems = problemsOf(input);
    const found = problems.find((p) => p.path === path || p.path.startsWith(`${path}`));
    expect(found, JSON.stringify(problems)).toBeDefined();
    expect(found!.message).toMatch(message);
  });

  it('reports every problem at once, not just the first', () => {
    const fleet = simFleet();
    const problems = problemsOf({
      ...fleet,
      name: 'Bad Name',
      groups: { web: { count: -2, cpu: 0, memory: 'lots', image: 'x', colour: 'red' } },
    });
    expect(problems.map((p) => p.path).sort()).toEqual(['groups.web.colour', 'groups.web.count', 'groups.web.cpu', 'groups.web.memory', 'name']);
  });

  it('names the image problem when no allowed provider declares the image', () => {
    const fleet = simFleet({ providers: { lab: { type: 'sim', images: ['ubuntu-24.04'] } } });
    expect(problemsOf(fleet)).toContainEqual({ path: 'groups.web.image', message: expect.stringMatching(/image "debian-12" is not declared/) });
  });

  it('throws a FleetSpecError that is recognisable across package copies', () => {
    let caught: unknown;
    try {
      parseFleet({ name: 'x' });
    } catch (error) {
      caught = error;
    }
    expect(FleetSpecError.isInstance(caught)).toBe(true);
    expect((caught as FleetSpecError).code).toBe('InvalidSpec');
    expect((caught as FleetSpecError).fault).toBe('client');
  });
});

describe('parseFleetText', () => {
  it('locates problems by line in YAML', () => {
    const text = ['name: shop', 'providers:', '  lab: { type: sim }', 'groups:', '  web:', '    count: 2', '    cpu: 2', '    memroy: 4GiB', '    image: debian'].join('\n');
    try {
      parseFleetText(text, 'fleet.yaml');
      expect.unreachable();
    } catch (error) {
      const problems = (error as FleetSpecError).problems;
      expect(problems).toContainEqual(expect.objectContaining({ path: 'groups.web.memroy', line: 8, message: expect.stringMatching(/did you mean "memory"/) }));
      expect(problems).toContainEqual(expect.objectContaining({ path: 'groups.web.memory', message: expect.stringMatching(/required/) }));
      expect((error as Error).message).toMatch(/^fleet\.yaml: 2 problems/);
    }
  });

  it('reports malformed YAML with its line', () => {
    expect(() => parseFleetText('name: shop\ngroups: [\n  a: b\n', 'bad.yaml')).toThrowError(/bad\.yaml: 1 problem\n.*line \d+.*not valid YAML/s);
  });

  it('refuses duplicate keys instead of letting the last one win silently', () => {
    expect(() => parseFleetText('name: a\nname: b\n')).toThrowError(/not valid YAML or JSON/);
  });

  it('reads JSON as well', () => {
    expect(parseFleetText(JSON.stringify(simFleet())).name).toBe('shop');
  });
});

describe('loadFleetFile', () => {
  it('reports a missing file as a spec error naming the file', async () => {
    await expect(loadFleetFile('/nonexistent/fleet.yaml')).rejects.toThrowError(/\/nonexistent\/fleet\.yaml: 1 problem\n.*file not found/s);
  });

  it('loads a YAML file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'novacron-'));
    writeFileSync(join(dir, 'fleet.json'), JSON.stringify(simFleet()));
    expect((await loadFleetFile(join(dir, 'fleet.json'))).groups.db!.disk).toBe(100);
  });
});

describe('fleetJsonSchema', () => {
  it('describes the input form of a fleet file for editors', () => {
    const schema = fleetJsonSchema() as { properties: Record<string, unknown>; required: string[] };
    expect(schema.required).toEqual(expect.arrayContaining(['name', 'providers', 'groups']));
    const text = JSON.stringify(schema);
    expect(text).toContain('"additionalProperties":false');
    // sizes accept numbers and strings
    expect(text).toMatch(/"memory":\{"anyOf":\[\{"type":"number"\},\{"type":"string","pattern"/);
  });
});
