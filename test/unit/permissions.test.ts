// The permissions table (shared/permissions.ts) against every subject ferry uses: each role may
// do what its job needs and nothing else. The hostile-clients integration test checks that
// nats-server enforces the same table.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureCa } from '../../deploy/pki/certs.ts';
import { issueIdentity, userIdentities } from '../../deploy/pki/identity.ts';
import { natsAuthorization } from '../../deploy/pki/nats-auth.ts';
import { allows, decisionRead, everySubject, inboxPrefix, permissionsFor, permissionsMarkdown, subjectMatches } from '../../shared/permissions.ts';
import { agentApi, coordinatorApi } from '../../shared/protocol.ts';
import { buckets, subjects } from '../../shared/subjects.ts';

const hosts = ['h1', 'h2'];
const all = everySubject(hosts);
const pub = (identity: string) => all.filter((s) => allows(permissionsFor(identity).publish.allow, s));
const sub = (identity: string) => all.filter((s) => allows(permissionsFor(identity).subscribe.allow, s));
const agentEndpoints = (h: string) => Object.keys(agentApi).map((e) => subjects.agent(h, e as keyof typeof agentApi));
const coordEndpoints = Object.keys(coordinatorApi).map((e) => subjects.coordinator(e as keyof typeof coordinatorApi));
const kvAndJs = all.filter((s) => s.startsWith('$JS.') || s.startsWith('$KV.'));

describe('subject patterns', () => {
  it('match as nats-server matches them', () => {
    expect(subjectMatches('ferry.agent.*.run', 'ferry.agent.h1.run')).toBe(true);
    expect(subjectMatches('ferry.agent.*.run', 'ferry.agent.h1.mig.run')).toBe(false);
    expect(subjectMatches('$KV.b.>', '$KV.b.x.y')).toBe(true);
    expect(subjectMatches('$KV.b.>', '$KV.b')).toBe(false);
    expect(subjectMatches('a.b', 'a.b.c')).toBe(false);
  });
});

describe('permissions table', () => {
  it('an agent publishes only its own heartbeats and progress and the records it set aside, reads only decisions, and answers only its own endpoints', () => {
    expect(pub('agent.h1')).toEqual([subjects.heartbeat('h1'), subjects.migrationProgress('h1'), subjects.recordEvents, decisionRead('m-1')]);
    expect(sub('agent.h1').filter((s) => s.startsWith('ferry.'))).toEqual(agentEndpoints('h1'));
    expect(permissionsFor('agent.h1').allow_responses).toBe(true);
  });

  it('only a coordinator calls agent endpoints (every one, on every host), writes KV and publishes migration events', () => {
    const c = pub('coordinator.c1');
    for (const h of hosts) for (const e of agentEndpoints(h)) expect(c).toContain(e);
    for (const s of kvAndJs) expect(c).toContain(s);
    expect(c).toContain(subjects.migrationEvents('m-1'));
    expect(c).toContain(subjects.recordEvents);
    for (const other of ['agent.h1', 'operator.admin']) {
      expect(pub(other).filter((s) => s.startsWith('ferry.agent.') && !s.endsWith('.heartbeat') && !s.endsWith('.progress'))).toEqual([]);
      expect(pub(other).filter((s) => kvAndJs.includes(s))).toEqual(other === 'agent.h1' ? [decisionRead('m-1')] : []);
      expect(pub(other)).not.toContain(subjects.migrationEvents('m-1'));
    }
  });

  it("an agent reads a migration's decision by direct get and nothing else of KV: no state, no write, no other API", () => {
    const a = permissionsFor('agent.h1').publish.allow;
    expect(allows(a, `$JS.API.DIRECT.GET.KV_${buckets.migrations}.$KV.${buckets.migrations}.m-7.decision`)).toBe(true);
    for (const s of [
      `$JS.API.DIRECT.GET.KV_${buckets.migrations}.$KV.${buckets.migrations}.m-7.state`,
      `$JS.API.DIRECT.GET.KV_${buckets.migrations}`,
      `$JS.API.STREAM.MSG.GET.KV_${buckets.migrations}`,
      `$KV.${buckets.migrations}.m-7.decision`,
      `$KV.${buckets.quarantine}.x`,
      `$JS.API.DIRECT.GET.KV_${buckets.hosts}.$KV.${buckets.hosts}.h2`,
    ])
      expect(allows(a, s), s).toBe(false);
  });

  it('only the operator follows records set aside; the coordinator writes the quarantine bucket', () => {
    expect(sub('operator.admin')).toContain(subjects.recordEvents);
    for (const other of ['agent.h1', 'coordinator.c1']) expect(sub(other)).not.toContain(subjects.recordEvents);
    expect(allows(permissionsFor('coordinator.c1').publish.allow, `$KV.${buckets.quarantine}.ferry_migrations.m-1.state`)).toBe(true);
  });

  it('a coordinator cannot forge heartbeats or progress or call the coordinator endpoints itself', () => {
    const c = pub('coordinator.c1');
    for (const h of hosts) expect(c).not.toContain(subjects.heartbeat(h));
    for (const h of hosts) expect(c).not.toContain(subjects.migrationProgress(h));
    for (const e of coordEndpoints) expect(c).not.toContain(e);
    expect(sub('coordinator.c1')).toEqual(expect.arrayContaining([...hosts.map(subjects.heartbeat), ...hosts.map(subjects.migrationProgress), ...coordEndpoints]));
  });

  it("an agent reports progress under its own name only, and no one but the coordinator reads it", () => {
    expect(allows(permissionsFor('agent.h1').publish.allow, subjects.migrationProgress('h2'))).toBe(false);
    for (const other of ['agent.h1', 'operator.admin']) expect(allows(permissionsFor(other).subscribe.allow, subjects.migrationProgress('h1'))).toBe(false);
  });

  it('only the operator calls the coordinator (run, stop, migrate, ...) and discovers services', () => {
    expect(pub('operator.admin')).toEqual(expect.arrayContaining(coordEndpoints));
    expect(pub('operator.admin').filter((s) => !s.startsWith('$SRV.'))).toEqual(coordEndpoints);
    for (const other of ['agent.h1', 'coordinator.c1']) expect(pub(other).filter((s) => coordEndpoints.includes(s) || s.startsWith('$SRV.'))).toEqual([]);
    expect(permissionsFor('operator.admin').allow_responses).toBe(false);
  });

  it("each identity reads replies on its own inbox only, never on another's", () => {
    const ids = ['agent.h1', 'agent.h2', 'coordinator.c1', 'coordinator.c2', 'operator.admin'];
    for (const a of ids) {
      for (const b of ids) expect(allows(permissionsFor(a).subscribe.allow, `${inboxPrefix(b)}.x.y`)).toBe(a === b);
      expect(allows(permissionsFor(a).subscribe.allow, '_INBOX.x.y')).toBe(false);
    }
  });

  it('refuses a name that is no user identity', () => {
    for (const bad of ['nats.n1', 'root', 'agent.', 'agent.H1', 'admin.x', 'agent.a.b']) expect(() => permissionsFor(bad)).toThrow(/not a user identity/);
  });
});

// openssl runs: slow on a loaded machine.
describe('nats-server authorization config', { timeout: 120_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-perm-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('lists one nkey user per issued user identity with its role\'s permissions, and no anonymous user', () => {
    ensureCa(dir);
    const ids = ['agent.h1', 'coordinator.c1', 'operator.admin'].map((id) => issueIdentity(dir, id));
    issueIdentity(dir, 'nats.n1', { ips: ['10.0.0.1'] });
    expect(existsSync(join(dir, 'nats.n1.nk'))).toBe(false);
    expect(userIdentities(dir).map((u) => u.identity)).toEqual(['agent.h1', 'coordinator.c1', 'operator.admin']);
    const conf = natsAuthorization(userIdentities(dir));
    for (const f of ids) {
      expect(conf).toContain(`nkey: "${f.publicKey}"`);
      expect(readFileSync(f.credentials!, 'utf8')).not.toContain(f.publicKey!);
    }
    expect(conf).not.toMatch(/no_auth_user|password|token/);
    expect(conf).toContain(JSON.stringify(buckets.hosts).slice(1, -1));
  });

  it('rotating an identity replaces its nkey', () => {
    const before = userIdentities(dir).find((u) => u.identity === 'agent.h1')!.publicKey;
    issueIdentity(dir, 'agent.h1');
    expect(userIdentities(dir).find((u) => u.identity === 'agent.h1')!.publicKey).not.toBe(before);
  });
});

describe('docs/security.md', () => {
  it('shows the table the servers enforce', () => {
    expect(readFileSync(new URL('../../docs/security.md', import.meta.url), 'utf8')).toContain(permissionsMarkdown());
  });
});
