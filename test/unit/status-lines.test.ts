// Live progress in the CLI: redrawn in place on a terminal, thinned out in a log.
import { describe, expect, it } from 'vitest';
import { StatusLines } from '../../cli/status-lines.ts';

function sink(isTTY: boolean, columns = 40) {
  const out = { text: '', isTTY, columns, write: (t: string) => void (out.text += t) };
  return out;
}

describe('StatusLines', () => {
  it('on a terminal: the live line is redrawn in place, a lasting line replaces it, and the last one stays at the end', () => {
    const out = sink(true);
    const s = new StatusLines(out);
    s.line('round 1 ...');
    s.live('round 1: 10 of 100 pages sent');
    s.live('round 1: 50 of 100 pages sent');
    s.line('round 1 done');
    s.live('last delta: 3 of 3 pages sent');
    s.end();
    expect(out.text).toBe(
      'round 1 ...\n' +
        '\r\x1b[2Kround 1: 10 of 100 pages sent' +
        '\r\x1b[2Kround 1: 50 of 100 pages sent' +
        '\r\x1b[2Kround 1 done\n' +
        '\r\x1b[2Klast delta: 3 of 3 pages sent\n',
    );
  });

  it('on a terminal: a live line wider than the terminal is cut, so that redrawing it does not wrap', () => {
    const out = sink(true, 20);
    new StatusLines(out).live('x'.repeat(50));
    expect(out.text).toBe(`\r\x1b[2K${'x'.repeat(18)}…`);
  });

  it('in a log or pipe: plain lines, the live one at most once per interval, no control characters', () => {
    const out = sink(false);
    let t = 0;
    const s = new StatusLines(out, 2_000, () => t);
    s.live('a');
    t = 1_000;
    s.live('b');
    t = 2_500;
    s.live('c');
    s.line('done');
    s.end();
    expect(out.text).toBe('a\nc\ndone\n');
  });
});
