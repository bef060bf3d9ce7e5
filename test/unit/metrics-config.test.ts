// What an operator installs next to the daemons: the Prometheus scrape config and alert rules,
// the Grafana dashboard, the config examples. They parse, and every metric they name exists in
// the registries the daemons build (a renamed metric fails here, not in a silent dashboard).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { agentMetrics } from '../../agent/metrics.ts';
import { coordinatorMetrics } from '../../coordinator/metrics.ts';
import { AgentConfig, CoordinatorConfig } from '../../shared/config.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const read = (rel: string) => readFileSync(path.join(root, rel), 'utf8');
// js-yaml comes with eslint; it is only read here.
const yaml = createRequire(import.meta.url)('js-yaml') as { load(text: string): unknown };

/** Every series name the daemons can export: each metric, and a histogram's _bucket, _sum and _count. */
async function exportedNames(): Promise<Set<string>> {
  // A connection whose status never changes: the NATS gauge is registered as with a real one.
  const nc = { status: async function* () {}, isClosed: () => false };
  const a = agentMetrics({ workloads: () => [], nc });
  const c = coordinatorMetrics({ leading: () => true, inFlight: () => 0, fleetJobs: () => [], hosts: () => [], workloadsOn: () => null, nc });
  try {
    const names = new Set<string>(['up']);
    for (const r of [a.registry, c.registry]) {
      for (const m of await r.getMetricsAsJSON()) {
        names.add(m.name);
        if (String(m.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(m.name + s);
      }
    }
    return names;
  } finally {
    a.stop();
    c.stop();
  }
}

/** Metric names an expression uses: identifiers that name ferry's or the process's series (not functions, labels or keywords). */
const namesIn = (expr: string): string[] => [...expr.replace(/\{[^}]*\}/g, '').matchAll(/\b((?:ferry|process|nodejs)_[a-z0-9_]+|up)\b(?!\s*\()/g)].map((m) => m[1]!);

interface Rule {
  alert: string;
  expr: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

describe('deploy/prometheus and deploy/grafana', () => {
  it('prometheus.yml scrapes agents and coordinators with a bearer token from a file, and loads the alert rules', () => {
    const cfg = yaml.load(read('deploy/prometheus/prometheus.yml')) as {
      rule_files: string[];
      scrape_configs: { job_name: string; metrics_path: string; authorization: { type: string; credentials_file: string }; static_configs: { targets: string[] }[] }[];
    };
    expect(cfg.rule_files).toContain('alerts.yml');
    expect(cfg.scrape_configs.map((j) => j.job_name).sort()).toEqual(['ferry-agent', 'ferry-coordinator']);
    for (const job of cfg.scrape_configs) {
      expect(job.metrics_path).toBe('/metrics');
      expect(job.authorization).toMatchObject({ type: 'Bearer', credentials_file: expect.stringMatching(/^\//) });
      // A 3-host cluster: three agents, three coordinators (one leads).
      expect(job.static_configs.flatMap((s) => s.targets)).toHaveLength(3);
    }
  });

  it('alerts.yml has the rules operators need, each on metrics the daemons export', async () => {
    const doc = yaml.load(read('deploy/prometheus/alerts.yml')) as { groups: { name: string; rules: Rule[] }[] };
    const rules = doc.groups.flatMap((g) => g.rules);
    expect(rules.map((r) => r.alert)).toEqual(
      expect.arrayContaining(['FerryHostLost', 'FerryCoordinatorWithoutLeader', 'FerryMigrationsRollingBack', 'FerryDowntimeOverBudget', 'FerryNatsDisconnected', 'FerryDrainStuck']),
    );
    const exported = await exportedNames();
    for (const r of rules) {
      expect(r.labels?.severity, r.alert).toMatch(/^(page|warning)$/);
      expect(r.annotations?.summary, r.alert).toBeTruthy();
      const used = namesIn(r.expr);
      expect(used.length, r.alert).toBeGreaterThan(0);
      for (const n of used) expect(exported, `${r.alert} uses ${n}`).toContain(n);
    }
  });

  it('the Grafana dashboard uses only exported metrics', async () => {
    const dash = JSON.parse(read('deploy/grafana/ferry.json')) as { title: string; panels: { title: string; targets: { expr: string }[] }[] };
    expect(dash.title).toBe('ferry');
    const exported = await exportedNames();
    const exprs = dash.panels.flatMap((p) => p.targets.map((t) => ({ panel: p.title, expr: t.expr })));
    expect(exprs.length).toBeGreaterThan(10);
    for (const { panel, expr } of exprs) {
      const used = namesIn(expr);
      expect(used.length, panel).toBeGreaterThan(0);
      for (const n of used) expect(exported, `panel "${panel}" uses ${n}`).toContain(n);
    }
  });

  it('the config examples are valid and serve metrics with a token file', () => {
    const agent = AgentConfig.parse(JSON.parse(read('deploy/config/agent.example.json')));
    const coordinator = CoordinatorConfig.parse(JSON.parse(read('deploy/config/coordinator.example.json')));
    expect(agent.metrics).toMatchObject({ listen: expect.stringMatching(/:\d+$/), tokenFile: expect.stringMatching(/^\//) });
    expect(coordinator.metrics).toMatchObject({ listen: expect.stringMatching(/:\d+$/), tokenFile: expect.stringMatching(/^\//) });
    expect(() => AgentConfig.parse({ ...JSON.parse(read('deploy/config/agent.example.json')), metrics: { listen: 'nowhere', tokenFile: '/x' } })).toThrow(/ADDRESS:PORT/);
  });
});
