// The dashboard's two charts as SVG markup (no library, nothing fetched): pre-copy rounds as
// pairs of bars (dirty rate, bandwidth) and the downtime as a timeline of phases. Every value
// that reaches the markup is a number or goes through esc(). Styles come from app.css classes
// (the page's Content-Security-Policy allows no inline style).
import { niceMax, type ChartRound, type DowntimeChart } from './charts.ts';

export const esc = (s: unknown): string =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

const num = (n: number): string => (Number.isFinite(n) ? String(Math.round(n * 10) / 10) : '0');

export function rate(bps: number): string {
  const units = ['B/s', 'KB/s', 'MB/s', 'GB/s'];
  let v = bps;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v >= 100 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}

const W = 420;
const H = 150;
const PAD = { left: 56, right: 8, top: 18, bottom: 24 };

/** Dirty rate and bandwidth per round: one group of two bars per round. */
export function roundsSvg(rounds: ChartRound[]): string {
  if (rounds.length === 0) return `<svg class="chart rounds empty" viewBox="0 0 ${W} 40" role="img" aria-label="no pre-copy rounds"><text x="8" y="24">no pre-copy rounds</text></svg>`;
  const max = niceMax(Math.max(...rounds.flatMap((r) => [r.dirtyRateBps, r.bandwidthBps])));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const slot = plotW / rounds.length;
  const bar = Math.max(1, Math.min(24, (slot - 4) / 2));
  const y = (v: number) => PAD.top + plotH - (v / max) * plotH;
  const bars = rounds
    .map((r, i) => {
      const x0 = PAD.left + i * slot + (slot - 2 * bar) / 2;
      const one = (series: 'dirty' | 'bandwidth', v: number, x: number) =>
        `<rect class="${series}" data-round="${r.round}" data-series="${series}" data-value="${num(v)}" x="${num(x)}" y="${num(y(v))}" width="${num(bar)}" height="${num(PAD.top + plotH - y(v))}"><title>round ${r.round}: ${series === 'dirty' ? 'dirty rate' : 'bandwidth'} ${esc(rate(v))}${r.throttled ? ' (throttled)' : ''}</title></rect>`;
      const label = rounds.length <= 30 || r.round % 5 === 0 ? `<text class="tick" x="${num(x0 + bar)}" y="${H - 8}" text-anchor="middle">${r.round}</text>` : '';
      return `<g class="round" data-round="${r.round}">${one('dirty', r.dirtyRateBps, x0)}${one('bandwidth', r.bandwidthBps, x0 + bar)}${label}</g>`;
    })
    .join('');
  const axis = [0, max / 2, max]
    .map((v) => `<line class="grid" x1="${PAD.left}" x2="${W - PAD.right}" y1="${num(y(v))}" y2="${num(y(v))}"/><text class="tick" x="${PAD.left - 4}" y="${num(y(v) + 4)}" text-anchor="end">${esc(rate(v))}</text>`)
    .join('');
  const legend = `<g class="legend"><rect class="dirty" x="${PAD.left}" y="4" width="10" height="10"/><text x="${PAD.left + 14}" y="13">dirty rate</text><rect class="bandwidth" x="${PAD.left + 90}" y="4" width="10" height="10"/><text x="${PAD.left + 104}" y="13">bandwidth</text><text x="${W - PAD.right}" y="13" text-anchor="end">per round</text></g>`;
  return `<svg class="chart rounds" viewBox="0 0 ${W} ${H}" role="img" aria-label="dirty rate and bandwidth per pre-copy round">${axis}${bars}${legend}</svg>`;
}

/** The downtime on a time axis from the freeze: one row per phase, then what no phase covered. */
export function downtimeSvg(chart: DowntimeChart | null): string {
  if (!chart) return `<svg class="chart downtime empty" viewBox="0 0 ${W} 40" role="img" aria-label="no downtime yet"><text x="8" y="24">no downtime yet</text></svg>`;
  const rowH = 16;
  const rows = chart.segments.length;
  const height = PAD.top + rows * (rowH + 4) + PAD.bottom;
  const plotW = W - PAD.left - PAD.right;
  const total = Math.max(chart.downtimeMs, 1e-6);
  const x = (t: number) => PAD.left + (Math.min(t, total) / total) * plotW;
  const bars = chart.segments
    .map((s, i) => {
      const y0 = PAD.top + i * (rowH + 4);
      const w = Math.max(1, x(s.offsetMs + s.durationMs) - x(s.offsetMs));
      return `<g class="phase" data-phase="${esc(s.phase)}"><text class="tick" x="${PAD.left - 4}" y="${y0 + 12}" text-anchor="end">${esc(s.phase)}</text><rect class="phase-${esc(s.phase)}" data-phase="${esc(s.phase)}" data-ms="${num(s.durationMs)}" x="${num(x(s.offsetMs))}" y="${y0}" width="${num(w)}" height="${rowH}"><title>${esc(s.phase)}: ${num(s.durationMs)} ms</title></rect></g>`;
    })
    .join('');
  const axisY = height - PAD.bottom + 4;
  const axis = `<line class="grid" x1="${PAD.left}" x2="${W - PAD.right}" y1="${axisY}" y2="${axisY}"/><text class="tick" x="${PAD.left}" y="${axisY + 14}">0</text><text class="tick" x="${W - PAD.right}" y="${axisY + 14}" text-anchor="end">${num(chart.downtimeMs)} ms downtime${chart.uncoveredMs > 0.5 ? ` (${num(chart.uncoveredMs)} ms between phases)` : ''}</text>`;
  return `<svg class="chart downtime" viewBox="0 0 ${W} ${height}" role="img" aria-label="downtime by phase" data-downtime-ms="${num(chart.downtimeMs)}">${bars}${axis}</svg>`;
}
