import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AgentConfig, CoordinatorConfig, loadConfig } from '../../shared/config.ts';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { HostFacts } from '../../shared/facts.ts';
import { Heartbeat, HostView, agentApi, replyEnvelope } from '../../shared/protocol.ts';
import { decode, encode } from '../../shared/rpc.ts';

const facts = (): HostFacts => ({
  name: 'h1',
  hostname: 'vm',
  address: '10.77.0.11',
  kernel: { release: '6.18.44', version: '#1 SMP', arch: 'x86_64' },
  cpu: { model: 'AMD EPYC', count: 2, xsave: { xcr0: '0xe7', xstateSize: 2432 } },
  memory: { totalBytes: 25e9, availableBytes: 24e9 },
  features: {
    uffdWpAsync: true,
    pagemapScan: true,
    softDirty: false,
    clone3SetTid: true,
    sealedSystemMappings: false,
    timeNamespaces: true,
    cgroup2Freezer: true,
    ptrace: true,
  },
  agent: { version: '0.1.0', pid: 42, startedAt: '2026-01-01T00:00:00.000Z' },
  dataStream: { port: 7410, encrypt: true },
});
const heartbeat = (): Heartbeat => ({ protocol: 1, host: 'h1', seq: 1, intervalMs: 1000, sentAt: '2026-01-01T00:00:00.000Z', facts: facts() });

function badMessage(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(FerryError);
    expect((err as FerryError).code).toBe(ErrorCode.BadMessage);
    return (err as FerryError).message;
  }
  throw new Error('expected a FERRY_BAD_MESSAGE');
}

describe('heartbeat and facts', () => {
  it('accepts a valid heartbeat through the wire codec', () => {
    expect(decode(Heartbeat, encode(heartbeat()), 'hb')).toEqual(heartbeat());
  });

  it.each([
    ['a host name that is not one subject token', { host: 'h1.evil' }, 'host'],
    ['a wrong protocol version', { protocol: 2 }, 'protocol'],
    ['a zero sequence number', { seq: 0 }, 'seq'],
    ['an unknown key', { extra: true }, 'extra'],
  ])('rejects %s, naming the field', (_what, patch, field) => {
    const msg = badMessage(() => decode(Heartbeat, encode({ ...heartbeat(), ...patch }), 'hb'));
    expect(msg).toContain(field);
  });

  it('rejects facts with a malformed XCR0 and a missing feature, naming both', () => {
    const f = facts() as unknown as { cpu: { xsave: { xcr0: string } }; features: Record<string, boolean> };
    f.cpu.xsave.xcr0 = 'e7';
    delete f.features.uffdWpAsync;
    const msg = badMessage(() => decode(HostFacts, encode(f), 'facts'));
    expect(msg).toContain('cpu.xsave.xcr0');
    expect(msg).toContain('features.uffdWpAsync');
  });

  it('rejects bytes that are not JSON', () => {
    expect(badMessage(() => decode(Heartbeat, new TextEncoder().encode('{nope'), 'hb'))).toContain('not valid JSON');
  });

  it('treats an empty payload as an empty request (NATS requests often carry none)', () => {
    expect(decode(agentApi.facts.request, new Uint8Array(), 'req')).toEqual({});
    badMessage(() => decode(agentApi.facts.request, encode({ unexpected: 1 }), 'req'));
  });

  it('host views carry the kernel release at the top level', () => {
    const view = { name: 'h1', alive: true, cordoned: false, kernel: '6.18.44', lastSeen: null, registeredAt: '2026-12-06T17:00:00.000Z', facts: facts() };
    expect(HostView.parse(view).kernel).toBe('6.18.44');
    expect(() => HostView.parse({ ...view, alive: 'yes' })).toThrow();
  });
});

describe('reply envelopes and errors', () => {
  it('round-trips an error with its code and retryable flag', () => {
    const err = new FerryError(ErrorCode.Timeout, 'agent h2 did not answer', { details: { host: 'h2' } });
    const env = decode(replyEnvelope(agentApi.facts.reply), encode({ ok: false, error: err.toWire() }), 'reply');
    expect(env.ok).toBe(false);
    if (env.ok) return;
    const back = FerryError.fromWire(env.error);
    expect(back.code).toBe(ErrorCode.Timeout);
    expect(back.retryable).toBe(true);
    expect(back.details).toEqual({ host: 'h2' });
  });

  it('rejects an error code outside the tree', () => {
    badMessage(() => decode(replyEnvelope(agentApi.facts.reply), encode({ ok: false, error: { code: 'E_WHAT', message: 'x', retryable: false } }), 'r'));
  });

  it('wraps foreign errors as internal ones and keeps the message', () => {
    const e = FerryError.from(new TypeError('boom'));
    expect(e.code).toBe(ErrorCode.Internal);
    expect(e.message).toBe('boom');
    expect(e.retryable).toBe(false);
  });
});

describe('config', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ferry-config-'));
  const file = (name: string, value: unknown) => {
    const p = path.join(dir, name);
    writeFileSync(p, typeof value === 'string' ? value : JSON.stringify(value));
    return p;
  };

  it('fills defaults', () => {
    const c = loadConfig(AgentConfig, file('a.json', { name: 'h1', address: '10.0.0.1' }));
    expect(c.heartbeatMs).toBe(1000);
    expect(c.nats.servers).toEqual(['nats://127.0.0.1:4222']);
    expect(loadConfig(CoordinatorConfig, file('c.json', {})).hostLostAfterMs).toBe(3000);
  });

  it('rejects unknown and misspelt keys, naming the file and the key', () => {
    const p = file('bad.json', { name: 'h1', address: '10.0.0.1', heartbeatMS: 5 });
    expect(() => loadConfig(AgentConfig, p)).toThrow(/bad\.json.*heartbeatMS/);
  });

  it('rejects a file that is not JSON', () => {
    expect(() => loadConfig(AgentConfig, file('x.json', 'name: h1'))).toThrow(FerryError);
  });
});
