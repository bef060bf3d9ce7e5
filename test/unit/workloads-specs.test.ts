// The workload table, the sources and the README agree (no processes started here).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SRC_DIR, WORKLOADS_DIR, WORKLOAD_NAMES, WORKLOAD_SPECS } from '../workloads/harness.ts';

describe('workload specs', () => {
  it('every spec has a source and every source has a spec', () => {
    const sources = new Set<string>(Object.values(WORKLOAD_SPECS).map((s) => s.source));
    for (const s of sources) expect(existsSync(join(SRC_DIR, s))).toBe(true);
    const files = readdirSync(SRC_DIR).filter((f) => f.endsWith('.c') || f.endsWith('.py'));
    expect(files.sort()).toEqual([...sources].sort());
  });

  it('the README documents every workload', () => {
    const readme = readFileSync(join(WORKLOADS_DIR, 'README.md'), 'utf8');
    for (const name of WORKLOAD_NAMES) expect(readme).toContain(`### \`${name}\``);
  });

  it('every C workload includes the shared status helpers and takes the status path', () => {
    for (const spec of Object.values(WORKLOAD_SPECS)) {
      const text = readFileSync(join(SRC_DIR, spec.source), 'utf8');
      if (spec.kind === 'c') expect(text).toContain('#include "wl_common.h"');
      else expect(text).toContain('sys.argv[1]');
    }
  });
});
