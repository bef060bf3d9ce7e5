// ferry's conformance suite (test/conformance): every program's own verdict after a checkpoint
// and restore. A row may be restored, refused before the freeze, or skipped; never wrong.
import { beforeAll, describe, expect, it } from 'vitest';
import { type Row, listFeatures, runAll } from '../conformance/runner.ts';
import { sealInheritedFds } from './engine-fixtures/helpers.ts';

const features = listFeatures();
let rows = new Map<string, Row>();

beforeAll(async () => {
  sealInheritedFds();
  rows = new Map((await runAll(features)).map((r) => [r.feature, r]));
}, 300_000);

describe('conformance: checkpoint and restore of one program per kernel feature', () => {
  it.each(features)('%s is restored correctly or refused before the freeze', (feature) => {
    const r = rows.get(feature);
    expect(r, `no row for ${feature}`).toBeDefined();
    expect(r!.outcome, `${feature}: ${r!.message}`).not.toBe('wrong');
  });
});
