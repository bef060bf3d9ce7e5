// docs/schemas/ is what the code generates from its zod schemas: a schema changed in code without
// `npm run schemas` fails here. Also: the one time format of the CLI's JSON.
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI_OUTPUTS, schemaFileText } from '../../cli/schemas.ts';
import { MigrationEvent, eventForUser } from '../../shared/migration-events.ts';
import { isoTime } from '../../shared/time.ts';
import { REPO } from '../integration/helpers/cli.ts';

const dir = path.join(REPO, 'docs/schemas');
const names = Object.keys(CLI_OUTPUTS) as (keyof typeof CLI_OUTPUTS)[];

describe('JSON Schemas of the CLI output', () => {
  it.each(names)('docs/schemas/%s.json matches the code', (name) => {
    expect(readFileSync(path.join(dir, `${name}.json`), 'utf8')).toBe(schemaFileText(name));
  });

  it('has no file the code does not generate', () => {
    expect(readdirSync(dir).filter((f) => f.endsWith('.json')).sort()).toEqual(names.map((n) => `${n}.json`).sort());
  });

  it('times are ISO 8601: events get theirs at the boundary, schemas say date-time', () => {
    expect(isoTime(0)).toBe('1970-01-01T00:00:00.000Z');
    expect(isoTime(null)).toBeNull();
    // One schema per event type, each with its time as a date-time.
    const schema = JSON.parse(schemaFileText('migration-event')) as { oneOf?: { properties: { at: { format: string } } }[]; anyOf?: { properties: { at: { format: string } } }[] };
    const kinds = schema.oneOf ?? schema.anyOf ?? [];
    expect(kinds.length).toBeGreaterThan(5);
    for (const k of kinds) expect(k.properties.at.format).toBe('date-time');
    const view = JSON.parse(schemaFileText('migration')) as { properties: { startedAt: { anyOf: { format?: string }[] } } };
    expect(view.properties.startedAt.anyOf.some((s) => s.format === 'date-time')).toBe(true);
    for (const k of MigrationEvent.options) expect(k.shape.at.safeParse(1765000000000).success).toBe(false);
    const at = Date.UTC(2026, 11, 6, 17, 0, 0);
    expect(eventForUser({ migrationId: 'm-abcd', type: 'phase.entered', at, data: { phase: 'freeze' }, view: {} as never }).at).toBe('2026-12-06T17:00:00.000Z');
  });
});
