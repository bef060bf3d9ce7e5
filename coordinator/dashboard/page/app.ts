/// <reference lib="dom" />
// The dashboard page (bundled with its schemas by coordinator/dashboard/bundle.ts, served as
// /app.js). It reads one stream, /api/events: `state` (hosts, workloads, migrations, drains) when
// something changed, and `migration` for each migration event (rounds as they finish), and draws
// everything from that. Each document is validated with the schemas the coordinator uses; a
// document that fails is shown as an error, never drawn.
import { z } from 'zod';
import { bytes } from '../../../cli/format.ts';
import { DashboardMigrationEvent, DashboardState } from '../../../shared/dashboard.ts';
import type { MigrationView } from '../../../shared/migration.ts';
import type { FleetJob } from '../../../shared/fleet.ts';
import { downtimeChart, roundSeries } from '../charts.ts';
import { downtimeSvg, esc, rate, roundsSvg } from '../svg.ts';

// The page's Content-Security-Policy forbids eval: zod must not try it.
z.config({ jitless: true });

/** Ended migrations shown with their charts, newest first. */
const ENDED_SHOWN = 10;

let state: DashboardState | null = null;
let problem: string | null = null;
let connection: 'connecting' | 'live' | 'reconnecting' | 'ended' = 'connecting';

const $ = (id: string): HTMLElement => document.getElementById(id)!;

function rows(headers: string[], body: string): string {
  return `<table><thead><tr>${headers.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${body}</tbody></table>`;
}

function hostsHtml(s: DashboardState): string {
  if (s.hosts.length === 0) return '<p class="none">no hosts registered</p>';
  const load = new Map(s.loads.map((l) => [l.host, l.cpusUsed]));
  const count = (h: string) => s.workloads.workloads.filter((w) => w.host === h && w.state !== 'exited').length;
  return rows(
    ['host', 'state', 'CPU', 'memory', 'workloads', 'address', 'kernel'],
    s.hosts
      .map((h) => {
        const m = h.facts.memory;
        const used = Math.max(0, m.totalBytes - m.availableBytes);
        const cpus = load.get(h.name);
        return `<tr data-host="${esc(h.name)}" data-alive="${h.alive}" data-cordoned="${h.cordoned}">
          <td class="name">${esc(h.name)}</td>
          <td class="state ${h.alive ? 'ok' : 'bad'}">${h.alive ? 'alive' : 'LOST'}${h.cordoned ? ' <span class="tag">cordoned</span>' : ''}</td>
          <td class="cpu" data-cpus="${h.facts.cpu.count}">${h.facts.cpu.count} CPUs${cpus === null || cpus === undefined ? '' : `, workloads use ${cpus.toFixed(2)}`}</td>
          <td class="mem" data-total="${m.totalBytes}" data-available="${m.availableBytes}"><progress max="${m.totalBytes}" value="${used}"></progress> ${esc(bytes(used))} of ${esc(bytes(m.totalBytes))}</td>
          <td class="count">${count(h.name)}</td>
          <td>${esc(h.facts.address)}</td>
          <td>${esc(h.kernel)}</td></tr>`;
      })
      .join(''),
  );
}

function workloadsHtml(s: DashboardState): string {
  const w = s.workloads;
  const notes = [
    ...w.unanswered.map((u) => `<p class="warn">${esc(u.host)} did not answer: its workloads are missing here (${esc(u.error)})</p>`),
    ...w.lost.map((l) => `<p class="warn">${esc(l.host)} is lost; it may still run ${l.workloads ? l.workloads.map((c) => esc(c.name)).join(', ') || 'nothing' : 'what it ran (unknown here)'}</p>`),
  ].join('');
  if (w.workloads.length === 0) return `${notes}<p class="none">no workloads</p>`;
  return (
    notes +
    rows(
      ['workload', 'host', 'state', 'address', 'memory', 'processes', 'started'],
      w.workloads
        .map(
          (x) => `<tr data-workload="${esc(x.name)}" data-host="${esc(x.host)}" data-state="${esc(x.state)}">
          <td class="name">${esc(x.name)}</td><td class="host">${esc(x.host)}</td><td class="state">${esc(x.state)}</td>
          <td>${esc(x.address ?? '-')}</td><td>${esc(bytes(x.memoryBytes))}</td><td>${x.pids.length}</td><td>${esc(x.startedAt)}</td></tr>`,
        )
        .join(''),
    )
  );
}

/** A migration in flight: where it is, and its latest round. */
function progressHtml(v: MigrationView): string {
  const rounds = roundSeries(v);
  const last = rounds.at(-1);
  const round = last
    ? `round ${last.round}: dirty ${esc(rate(last.dirtyRateBps))}, bandwidth ${esc(rate(last.bandwidthBps))}, predicted downtime ${Math.round(last.predictedDowntimeMs)} ms`
    : 'no round finished yet';
  return `<li class="active-migration" data-id="${esc(v.id)}" data-rounds="${rounds.length}"><b>${esc(v.workload)}</b> ${esc(v.from)} → ${esc(v.to)}: <span class="state">${esc(v.state)}</span>; ${round}</li>`;
}

function fleetJobHtml(j: FleetJob): string {
  const done = j.items.filter((i) => i.state === 'moved' || i.state === 'stayed' || i.state === 'failed').length;
  const what = j.kind === 'drain' ? `drain of ${esc(j.host ?? '?')}` : 'rebalance';
  return `<li class="fleet-job" data-id="${esc(j.id)}" data-state="${esc(j.state)}">${what} (${esc(j.id)}): <span class="state">${esc(j.state)}</span>, ${done} of ${j.items.length} moves done <progress max="${Math.max(1, j.items.length)}" value="${done}"></progress>
    ${j.items.map((i) => `<span class="tag item-${esc(i.state)}">${esc(i.workload)} ${esc(i.from)}→${esc(i.to ?? '-')}: ${esc(i.state)}</span>`).join(' ')}</li>`;
}

function activeHtml(s: DashboardState): string {
  const migrating = s.migrations.filter((m) => m.outcome === null);
  const jobs = s.fleet.filter((j) => j.state === 'running');
  if (migrating.length === 0 && jobs.length === 0) return '<p class="none">no migration or drain in progress</p>';
  return `<ul>${migrating.map(progressHtml).join('')}${jobs.map(fleetJobHtml).join('')}</ul>`;
}

function migrationCard(v: MigrationView): string {
  const outcome = v.outcome ?? 'in progress';
  const facts = [
    `downtime ${v.downtimeMs === null ? '-' : `${Math.round(v.downtimeMs)} ms`}`,
    v.predictedDowntimeMs === null ? null : `predicted ${Math.round(v.predictedDowntimeMs)} ms`,
    `${v.rounds.length} round(s)`,
    v.tracker ? `tracking ${esc(v.tracker)}` : null,
    v.switchover ? `switchover: ${esc(v.switchover)}` : null,
    `${esc(bytes(v.bytesOnWire))} on the wire`,
    v.totalMs === null ? null : `${(v.totalMs / 1000).toFixed(1)} s in all`,
  ].filter(Boolean);
  const error = v.error ? `<p class="warn">${esc(v.error.code)} in ${esc(v.error.phase)}: ${esc(v.error.message)}</p>` : '';
  return `<article class="migration" data-id="${esc(v.id)}" data-workload="${esc(v.workload)}" data-outcome="${esc(outcome)}" data-from="${esc(v.from)}" data-to="${esc(v.to)}">
    <h3>${esc(v.workload)} ${esc(v.from)} → ${esc(v.to)} <span class="outcome ${esc(v.outcome ?? 'running')}">${esc(outcome)}</span></h3>
    <p class="id">${esc(v.id)} · ${esc(v.state)} · started ${esc(v.startedAt ?? '-')}</p>
    <p>${facts.join(' · ')}</p>${error}
    <div class="charts"><figure><figcaption>pre-copy rounds</figcaption>${roundsSvg(roundSeries(v))}</figure>
    <figure><figcaption>downtime by phase</figcaption>${downtimeSvg(downtimeChart(v))}</figure></div></article>`;
}

function migrationsHtml(s: DashboardState): string {
  const shown = [...s.migrations.filter((m) => m.outcome === null), ...s.migrations.filter((m) => m.outcome !== null).slice(0, ENDED_SHOWN)];
  return shown.length === 0 ? '<p class="none">no migrations recorded</p>' : shown.map(migrationCard).join('');
}

function render(): void {
  $('connection').textContent = connection;
  $('connection').className = connection;
  $('problem').textContent = problem ?? '';
  $('problem').hidden = problem === null;
  if (!state) return;
  $('coordinator').textContent = `${state.coordinator.id} (${state.coordinator.leading ? 'leading' : 'standby'})`;
  $('updated').textContent = state.at;
  show('hosts', hostsHtml(state));
  show('workloads', workloadsHtml(state));
  show('active', activeHtml(state));
  show('migrations', migrationsHtml(state));
  show('fleet', state.fleet.length === 0 ? '<p class="none">no drains or rebalances recorded</p>' : `<ul>${state.fleet.slice(0, ENDED_SHOWN).map(fleetJobHtml).join('')}</ul>`);
}

/** The markup each section shows: a section is rebuilt only when its markup changed (a selection or a hovered bar stays). */
const shown = new Map<string, string>();
function show(id: string, html: string): void {
  if (shown.get(id) === html) return;
  shown.set(id, html);
  $(id).innerHTML = html;
}

function parse<S extends z.ZodType>(schema: S, data: string, what: string): z.infer<S> | null {
  let raw: unknown;
  try {
    raw = JSON.parse(data);
  } catch {
    problem = `${what}: not JSON`;
    return null;
  }
  const r = schema.safeParse(raw);
  if (!r.success) {
    problem = `the coordinator sent a ${what} this page cannot read (${z.prettifyError(r.error)})`;
    return null;
  }
  return r.data;
}

/** A migration's newer view, from its event: replaces the one in the state, or is added first. */
function upsert(view: MigrationView): void {
  if (!state) return;
  const i = state.migrations.findIndex((m) => m.id === view.id);
  if (i >= 0) state.migrations[i] = view;
  else state.migrations.unshift(view);
}

const events = new EventSource('/api/events');
events.addEventListener('open', () => {
  connection = 'live';
  render();
});
events.addEventListener('state', (e) => {
  const s = parse(DashboardState, (e as MessageEvent<string>).data, 'state');
  if (s) {
    state = s;
    problem = null;
  }
  render();
});
events.addEventListener('migration', (e) => {
  const ev = parse(DashboardMigrationEvent, (e as MessageEvent<string>).data, 'migration event');
  if (ev) upsert(ev.view);
  render();
});
events.addEventListener('error', () => {
  // The browser reconnects by itself unless the server refused the stream (401: the session ended).
  connection = events.readyState === EventSource.CLOSED ? 'ended' : 'reconnecting';
  if (connection === 'ended') problem = 'the session ended or the coordinator refused the stream: run `ferry dashboard` for a new login link';
  render();
});
