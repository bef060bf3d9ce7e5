import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readAhead } from '../../agent/engine/process/read-ahead.ts';

describe('readAhead', () => {
  it('gives the text the reading thread read, then the same text again', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ferry-ra-'));
    const file = path.join(dir, 'f');
    writeFileSync(file, 'hello\nworld\n');
    const r = readAhead(file);
    expect(r.text()).toBe('hello\nworld\n');
    expect(r.text()).toBe('hello\nworld\n');
  });

  it('reads a /proc file of this process', () => {
    const r = readAhead(`/proc/${process.pid}/smaps`);
    expect(r.text()).toMatch(/VmFlags:/);
  });

  it('throws what a direct read throws for a file that is not there', () => {
    const r = readAhead('/nonexistent/ferry-read-ahead');
    expect(() => r.text()).toThrow(/ENOENT/);
  });

  it('keeps order when many reads are in flight', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ferry-ra-'));
    const reads = Array.from({ length: 20 }, (_, i) => {
      const f = path.join(dir, `f${i}`);
      writeFileSync(f, `file ${i}`);
      return readAhead(f);
    });
    expect(reads.map((r) => r.text())).toEqual(reads.map((_, i) => `file ${i}`));
  });
});
