// FERRY_FAULT parsing: a point fires for every step, or, named with @workload, only for that workload's.
import { describe, expect, it } from 'vitest';
import { faultAction, parseFaults } from '../../shared/fault.ts';

describe('fault points', () => {
  const faults = parseFaults('agent:send:before,agent:freeze:after@web=sleep:3000,agent:resume:before@db=sleep:10');
  it('a plain point crashes at every step', () => {
    expect(faultAction(faults, 'agent:send:before')).toBe('crash');
    expect(faultAction(faults, 'agent:send:before', 'web')).toBe('crash');
  });
  it('a point named with a workload fires for that workload only', () => {
    expect(faultAction(faults, 'agent:freeze:after', 'web')).toBe('sleep:3000');
    expect(faultAction(faults, 'agent:freeze:after', 'db')).toBeUndefined();
    expect(faultAction(faults, 'agent:freeze:after')).toBeUndefined();
    expect(faultAction(faults, 'agent:resume:before', 'db')).toBe('sleep:10');
  });
});
