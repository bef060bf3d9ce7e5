import { readdirSync } from 'node:fs';
import { getPriority } from 'node:os';
import { describe, expect, it } from 'vitest';
import { SWITCHOVER_NICE, raiseForSwitchover } from '../../agent/switchover-priority.ts';

const threads = () => readdirSync('/proc/self/task').map((t) => getPriority(Number(t)));

describe('raiseForSwitchover', () => {
  it.runIf(process.getuid?.() === 0)('raises every thread while held, nested holds included, and puts each back after the last', () => {
    const before = getPriority(0);
    const lower1 = raiseForSwitchover();
    expect(new Set(threads())).toEqual(new Set([Math.min(before, SWITCHOVER_NICE)]));
    const lower2 = raiseForSwitchover();
    lower1();
    lower1();
    expect(getPriority(0)).toBe(Math.min(before, SWITCHOVER_NICE));
    lower2();
    expect(new Set(threads())).toEqual(new Set([before]));
  });
});
