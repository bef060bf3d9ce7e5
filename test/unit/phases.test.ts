// The one table from coordinator phases to agent steps covers every step an agent serves, and
// the coordinator's phase actors call only what the table gives their phase.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { AGENT_STEPS, PHASES } from '../../shared/phases.ts';
import { agentApi } from '../../shared/protocol.ts';

describe('phases and agent steps', () => {
  it('every mig.* endpoint of the agent is some phase’s step, and every step in the table is an endpoint', () => {
    const endpoints = Object.keys(agentApi).filter((k) => k.startsWith('mig.'));
    const inTable = new Set(Object.values(AGENT_STEPS).flatMap((s) => [...s.source, ...s.destination]));
    expect([...inTable].sort()).toEqual([...endpoints].sort());
    expect(Object.keys(AGENT_STEPS).sort()).toEqual([...PHASES, 'rollback'].sort());
  });

  it('the coordinator calls each step on the side the table says', () => {
    // coordinator/actors.ts: d.agents.call(input.<side>, 'mig.<step>', ...)
    const src = readFileSync(new URL('../../coordinator/actors.ts', import.meta.url), 'utf8');
    const calls = [...src.matchAll(/agents\.call\(input\.(source|destination), '(mig\.[a-z]+)'/g)].map((m) => [m[1] as 'source' | 'destination', m[2]!] as const);
    expect(calls.length).toBeGreaterThan(8);
    for (const [side, step] of calls) {
      const phases = Object.entries(AGENT_STEPS).filter(([, s]) => (s[side] as readonly string[]).includes(step));
      expect(phases.length, `${step} on the ${side}`).toBeGreaterThan(0);
    }
  });
});
