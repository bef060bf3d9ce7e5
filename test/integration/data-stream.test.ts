// The data plane over real TCP: mutual TLS with the agents' own certificates, the one-shot accept
// per migration, the clear mode for trusted fabrics (still authenticated), integrity and
// back-pressure on loopback; then, in a real lab, a migration watched by a sniffer that reads every
// NATS message and KV bucket and tries to win the destination's accept with what it read.
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { LabStatus } from '../../deploy/lab/lab.ts';
import type { MigrationView } from '../../shared/migration.ts';
import { buckets } from '../../shared/subjects.ts';
import type { WorkloadInfo } from '../../shared/workload.ts';
import { ferry, ferryJson } from './helpers/cli.ts';
import { allAlive, freshLab, labEnv, untilHosts } from './helpers/lab.ts';
import { expectRunsOnceOn, progresses, runOnLab } from './helpers/lab-workloads.ts';
import { ErrorCode } from '../../shared/errors.ts';
import { CLEAR_PREAMBLE, connectStream, type StreamAuth, type StreamEndpoint } from '../../agent/transfer/stream.ts';
import { TLS_OPTIONS, type StreamCredentials } from '../../agent/transfer/auth.ts';
import { type ExpectedStream, StreamServer } from '../../agent/transfer/stream-server.ts';
import { encodeFrame, FrameDecoder } from '../../agent/transfer/frames.ts';
import type { StreamFrameHeader } from '../../shared/stream-frames.ts';
import { agentCredentials, loopbackPair, loopbackServer } from './helpers/stream-peers.ts';
import { labNats } from './helpers/lab-nats.ts';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

/** agent.<host> by name, issued by a CA the cluster does not trust, but trusting the cluster's CA itself. */
function foreign(host: string): StreamCredentials {
  const other = agentCredentials(host, 'other');
  const ca = agentCredentials(host).ca;
  return { ...other, ca, context: tls.createSecureContext({ ca, cert: other.cert, key: other.key, ...TLS_OPTIONS }) };
}

const auth = (migrationId: string, o: { as?: string; peer?: string; ca?: 'ferry' | 'other'; encrypt?: boolean } = {}): StreamAuth => ({
  migrationId,
  peer: o.peer ?? 'h2',
  credentials: o.ca === 'other' ? foreign(o.as ?? 'h1') : agentCredentials(o.as ?? 'h1'),
  encrypt: o.encrypt ?? true,
});

/** A raw client speaking the stream's frames by hand: the first reply's type, or "closed". */
async function rawAttempt(endpoint: StreamEndpoint, first: StreamFrameHeader, o: { tls?: tls.ConnectionOptions; preamble?: boolean } = {}): Promise<string> {
  const socket = o.tls
    ? tls.connect({ host: endpoint.host, port: endpoint.port, ...o.tls, checkServerIdentity: () => undefined })
    : net.connect(endpoint.port, endpoint.host);
  try {
    await Promise.race([once(socket, o.tls ? 'secureConnect' : 'connect'), once(socket, 'error').then(([e]) => Promise.reject(e as Error))]);
  } catch {
    return 'closed';
  }
  const decoder = new FrameDecoder();
  return new Promise<string>((resolve) => {
    socket.on('data', (c: Buffer) => {
      const f = decoder.push(c)[0];
      if (f) {
        resolve(f.header.t);
        socket.destroy();
      }
    });
    socket.on('close', () => resolve('closed'));
    socket.on('error', () => resolve('closed'));
    socket.write(Buffer.concat([...(o.preamble ? [CLEAR_PREAMBLE] : []), ...encodeFrame(first)]));
  });
}

/** The migration's real source connects; returns whether a frame went through, and encrypted or not. */
async function realSource(server: StreamServer, expected: ExpectedStream, id: string, encrypt = true): Promise<{ carried: boolean; encrypted: boolean }> {
  const [out, inc] = await Promise.all([connectStream(server.endpoint, auth(id, { encrypt })), expected.accept({ timeoutMs: 5000 })]);
  try {
    await out.send({ t: 'data' });
    return { carried: (await inc.expect('data')).header.t === 'data', encrypted: out.encrypted && inc.encrypted };
  } finally {
    out.destroy();
    inc.destroy();
  }
}

describe('agent-to-agent data stream (mutual TLS, loopback)', () => {
  it('carries frames both ways, intact and in order, encrypted', async () => {
    const { out: sender, inc: receiver } = await loopbackPair();
    expect([sender.encrypted, receiver.encrypted]).toEqual([true, true]);
    expect((sender.socket as tls.TLSSocket).getProtocol()).toBe('TLSv1.3');
    const sent = createHash('sha256');
    const got = createHash('sha256');
    const chunks = 64;
    const consume = (async () => {
      for (let i = 0; i < chunks; i++) {
        const f = await receiver.expect('data');
        expect(f.payload.readUInt32LE(0)).toBe(i);
        got.update(f.payload);
      }
      await receiver.send({ t: 'eof', sha256: got.copy().digest('hex') });
    })();
    for (let i = 0; i < chunks; i++) {
      const payload = randomBytes(1 << 20);
      payload.writeUInt32LE(i, 0); // its place in the sequence
      sent.update(payload);
      await sender.send({ t: 'data' }, payload);
    }
    await consume;
    const ack = await sender.expect('eof');
    expect(ack.header.sha256).toBe(sent.digest('hex'));
    expect(sender.bytesSent).toBeGreaterThan(chunks << 20);
    await sender.end();
    expect(await receiver.next()).toBeNull();
  });

  it('refuses a peer whose certificate another CA issued, and a peer with none; the real source still gets in', async () => {
    const server = await loopbackServer();
    try {
      const expected = server.expect('m-other-ca', 'h1');
      // agent.h1 by name, but not from the cluster's CA: the destination fails the TLS handshake.
      await expect(connectStream(server.endpoint, auth('m-other-ca', { ca: 'other' }), { timeoutMs: 5000 })).rejects.toMatchObject({ code: ErrorCode.Unavailable });
      // The same certificate without the cluster's CA: the sender does not trust the destination either.
      const stranger = { ...auth('m-other-ca'), credentials: agentCredentials('h1', 'other') };
      await expect(connectStream(server.endpoint, stranger, { timeoutMs: 5000 })).rejects.toThrow(/certificate/);
      // No client certificate at all: the same.
      expect(await rawAttempt(server.endpoint, { t: 'open', migrationId: 'm-other-ca' }, { tls: { ca: agentCredentials('h1').ca, minVersion: 'TLSv1.3' } })).toBe('closed');
      expect(await realSource(server, expected, 'm-other-ca')).toEqual({ carried: true, encrypted: true });
    } finally {
      server.close();
    }
  });

  it('refuses a valid certificate of the wrong agent (agent.h3 claiming to be the source from h1), without using up the real one’s chance', async () => {
    const server = await loopbackServer();
    try {
      const expected = server.expect('m-wrong-id', 'h1');
      await expect(connectStream(server.endpoint, auth('m-wrong-id', { as: 'h3' }), { timeoutMs: 5000 })).rejects.toMatchObject({
        code: ErrorCode.InvalidRequest,
        message: expect.stringMatching(/refused by agent\.h2: .*agent\.h3, not agent\.h1/),
      });
      expect(await realSource(server, expected, 'm-wrong-id')).toEqual({ carried: true, encrypted: true });
    } finally {
      server.close();
    }
  });

  it('the sender refuses a receiver that is not the destination agent', async () => {
    // agent.h3 listens where the sender expects agent.h2 (a hijacked address, a wrong endpoint).
    const server = await loopbackServer({ host: 'h3' });
    try {
      server.expect('m-wrong-dest', 'h1');
      await expect(connectStream(server.endpoint, auth('m-wrong-dest'), { timeoutMs: 5000 })).rejects.toMatchObject({
        code: ErrorCode.InvalidRequest,
        message: expect.stringMatching(/agent\.h3, not agent\.h2 \(the destination/),
      });
    } finally {
      server.close();
    }
  });

  it('takes one connection per migration: a second claim, and a migration nobody expects, are refused', async () => {
    const server = await loopbackServer();
    try {
      const expected = server.expect('m-one-shot', 'h1');
      const [out, inc] = await Promise.all([connectStream(server.endpoint, auth('m-one-shot')), expected.accept({ timeoutMs: 5000 })]);
      await expect(connectStream(server.endpoint, auth('m-one-shot'), { timeoutMs: 5000 })).rejects.toThrow(/connected already/);
      expect(() => server.expect('m-one-shot', 'h1')).toThrow(/connected already/);
      await expect(connectStream(server.endpoint, auth('m-made-up'), { timeoutMs: 5000 })).rejects.toThrow(/no stream of m-made-up is expected here/);
      // A fenced migration: its registration closed, nothing gets in.
      server.expect('m-fenced', 'h1').close();
      await expect(connectStream(server.endpoint, auth('m-fenced'), { timeoutMs: 5000 })).rejects.toThrow(/no stream of m-fenced/);
      // The accepted one is unaffected.
      await out.send({ t: 'data' });
      expect((await inc.expect('data')).header.t).toBe('data');
      out.destroy();
      inc.destroy();
    } finally {
      server.close();
    }
  });

  it('listens on the configured port, bound to the given address; a port in use is a config error naming it', async () => {
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const server = await StreamServer.open({ address: '127.0.0.1', port, credentials: agentCredentials('h2'), encrypt: true });
    try {
      expect(server.endpoint).toEqual({ host: '127.0.0.1', port });
      await expect(StreamServer.open({ address: '127.0.0.1', port, credentials: agentCredentials('h2'), encrypt: true })).rejects.toMatchObject({
        code: ErrorCode.BadConfig,
        message: expect.stringContaining(`127.0.0.1:${port} (stream.port`),
      });
      // Several migrations at once through the one port.
      const ids = ['m-multi-a', 'm-multi-b', 'm-multi-c'];
      const pairs = await Promise.all(ids.map((id) => Promise.all([connectStream(server.endpoint, auth(id)), server.expect(id, 'h1').accept({ timeoutMs: 5000 })])));
      await Promise.all(pairs.map(([out], i) => out.send({ t: 'data' }, Buffer.from(ids[i]!))));
      for (const [i, [out, inc]] of pairs.entries()) {
        expect((await inc.expect('data')).payload.toString()).toBe(ids[i]);
        out.destroy();
        inc.destroy();
      }
    } finally {
      server.close();
    }
  });

  describe('clear mode (stream.encrypt false on both agents)', () => {
    it('carries frames over a plain TCP connection bound to the authenticated one', async () => {
      const { out, inc } = await loopbackPair({ encrypt: false });
      expect([out.encrypted, inc.encrypted]).toEqual([false, false]);
      const payload = randomBytes(4 << 20);
      await out.send({ t: 'data' }, payload);
      expect((await inc.expect('data')).payload.equals(payload)).toBe(true);
      out.destroy();
      inc.destroy();
    });

    it('still authenticates: wrong identity, foreign CA, bare TCP and made-up tokens are refused', async () => {
      const server = await loopbackServer({ encrypt: false });
      try {
        const expected = server.expect('m-clear', 'h1');
        await expect(connectStream(server.endpoint, auth('m-clear', { as: 'h3', encrypt: false }), { timeoutMs: 5000 })).rejects.toThrow(/agent\.h3, not agent\.h1/);
        await expect(connectStream(server.endpoint, auth('m-clear', { ca: 'other', encrypt: false }), { timeoutMs: 5000 })).rejects.toMatchObject({ code: ErrorCode.Unavailable });
        // Clear connections that never authenticated: nothing to bind to, or a token nobody derived.
        expect(await rawAttempt(server.endpoint, { t: 'bind', migrationId: 'm-clear', token: '00'.repeat(32) })).toBe('closed');
        expect(await rawAttempt(server.endpoint, { t: 'bind', migrationId: 'm-clear', token: '00'.repeat(32) }, { preamble: true })).toBe('closed');
        expect(await rawAttempt(server.endpoint, { t: 'open', migrationId: 'm-clear', clear: true })).toBe('closed');
        expect(await realSource(server, expected, 'm-clear', false)).toEqual({ carried: true, encrypted: false });
      } finally {
        server.close();
      }
    });

    it('is encrypted when only one side allows clear', async () => {
      const server = await loopbackServer({ encrypt: true });
      try {
        const expected = server.expect('m-half', 'h1');
        expect(await realSource(server, expected, 'm-half', false)).toEqual({ carried: true, encrypted: true });
      } finally {
        server.close();
      }
      const pair = await loopbackPair({ encrypt: false });
      pair.close();
    });
  });

  it('back-pressure: a slow receiver holds the sender instead of letting buffers grow', async () => {
    const { out: sender, inc: receiver } = await loopbackPair();
    const payload = Buffer.alloc(4 << 20, 7);
    let sentFrames = 0;
    const pump = (async () => {
      for (let i = 0; i < 64; i++) {
        await sender.send({ t: 'data' }, payload);
        sentFrames++;
      }
    })();
    await new Promise((r) => setTimeout(r, 500));
    // Nothing was consumed: the sender is held once the receiver's bound and the kernel buffers fill.
    const inFlightBytes = sentFrames * payload.length;
    expect(inFlightBytes).toBeLessThan(128 << 20);
    expect(sentFrames).toBeLessThan(64);
    for (let i = 0; i < 64; i++) await receiver.expect('data');
    await pump;
    expect(sentFrames).toBe(64);
    sender.destroy();
    receiver.destroy();
  });

  it('accept() gives up when cancelled', async () => {
    const server = await loopbackServer();
    try {
      const ac = new AbortController();
      const p = server.expect('m-cancel', 'h1').accept({ signal: ac.signal });
      ac.abort();
      await expect(p).rejects.toMatchObject({ code: ErrorCode.Cancelled });
    } finally {
      server.close();
    }
  });
});

// --- in a real lab ------------------------------------------------------------------------------

const env = labEnv('dstream');

/** Every JSON object key in a message or record, at any depth. */
function jsonKeys(text: string): string[] {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return [];
  }
  const out: string[] = [];
  const walk = (x: unknown) => {
    if (Array.isArray(x)) x.forEach(walk);
    else if (x && typeof x === 'object') {
      for (const [k, y] of Object.entries(x)) {
        out.push(k);
        walk(y);
      }
    }
  };
  walk(v);
  return out;
}

/**
 * What a sniffer with everything it read can do at the destination's stream port, for the
 * migration it saw: a TLS client without a certificate, a clear `bind` with every long hex string
 * it read as the token, a bare `open`. Returns each attempt's first answer.
 */
async function sniffAttack(endpoint: StreamEndpoint, migrationId: string, harvested: string[], ca: Buffer): Promise<string[]> {
  const tries: Promise<string>[] = [
    rawAttempt(endpoint, { t: 'open', migrationId, clear: true }, { tls: { ca, minVersion: 'TLSv1.3' } }),
    rawAttempt(endpoint, { t: 'open', migrationId, clear: true }),
    ...harvested.slice(0, 20).map((token) => rawAttempt(endpoint, { t: 'bind', migrationId, token }, { preamble: true })),
  ];
  return Promise.all(tries);
}

describe('in a lab: an insider who reads every KV bucket as it is written (a coordinator identity)', () => {
  let lab: LabStatus;
  let nc: NatsConnection;

  beforeAll(async () => {
    lab = await freshLab(env, 2);
    // Anonymous clients are refused outright (hostile-clients.test.ts); the strongest reader left
    // is a coordinator, which reads every record the migration writes.
    nc = await labNats(env, 'coordinator.c2');
  });

  afterAll(async () => {
    await nc?.close();
    await ferry(['lab', 'down'], env);
  });

  it('finds no secret to read, cannot win the accept, and the stream is on the configured port', async () => {
    const w = await runOnLab(env, 'h1', 'memwriter', 'sniffed', ['64', '20', 'hotset']);
    await progresses(w);
    const seen: { where: string; data: string }[] = [];
    const attacks: Promise<string[]>[] = [];
    const ca = readFileSync(path.join(lab.dir, 'pki', 'ca.crt'));
    const h2 = lab.hosts.find((h) => h.name === 'h2')!;
    // The destination's stream endpoint is no secret: the configured port on its address.
    const endpoint: StreamEndpoint = { host: h2.address, port: 7410 };
    const records = await new Kvm(nc).open(buckets.migrations);
    const watch = await records.watch();
    void (async () => {
      for await (const e of watch) {
        const data = e.string();
        seen.push({ where: `kv ${buckets.migrations} ${e.key}`, data });
        const id = /^(m-[a-z0-9-]+)\./.exec(e.key)?.[1];
        if (!id || attacks.length >= 6) continue;
        const harvested = [...new Set(seen.flatMap((x) => x.data.match(/[0-9a-f]{32,}/g) ?? []))];
        // At once, racing the real source for the destination's one-shot accept.
        attacks.push(sniffAttack(endpoint, id, harvested, ca));
      }
    })();
    const r = await ferry(['migrate', 'sniffed', '--to', 'h2', '--json'], env);
    const v = JSON.parse(r.stdout) as MigrationView;
    expect(v.outcome, v.error?.message).toBe('completed');
    await expectRunsOnceOn(env, w, 'h2');
    watch.stop();

    // Every KV record, as the sniffer reads them after the fact.
    const kvm = new Kvm(nc);
    for await (const st of kvm.list()) {
      const kv = await kvm.open(st.bucket);
      for await (const k of await kv.keys()) seen.push({ where: `kv ${st.bucket} ${k}`, data: (await kv.get(k))?.string() ?? '' });
    }
    expect(seen.some((x) => x.where.startsWith('kv ') && x.data.includes(v.id))).toBe(true);
    // Nothing secret travels or rests where the sniffer reads.
    const secretish = seen.flatMap((x) => jsonKeys(x.data).filter((k) => /secret|token|passw|nonce|^mac$|privatekey/i.test(k)).map((k) => `${x.where}: ${k}`));
    expect(secretish).toEqual([]);
    // The sniffer's tries during the migration were all turned away; the real source got in.
    expect(attacks.length).toBeGreaterThan(0);
    for (const answers of await Promise.all(attacks)) expect(new Set(answers)).toEqual(new Set(['closed']));
    // The fixed port from the agent's config (default 7410), on the destination's address.
    const listening = await execFileP('ip', ['netns', 'exec', h2.namespace, 'ss', '-Hltn'], { encoding: 'utf8' });
    expect(listening.stdout).toContain(`${h2.address}:7410`);
  });

  it('an agent without a TLS identity takes no part: refused at preflight, nothing frozen, the workload runs on', async () => {
    const cfgPath = path.join(lab.dir, 'agents', 'h2.json');
    const cfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
    delete cfg.tls;
    writeFileSync(cfgPath, JSON.stringify(cfg, null, 2));
    await ferryJson(['lab', 'kill', 'h2'], env);
    await untilHosts(env, 'h2 is lost', (hs) => hs.some((h) => h.name === 'h2' && !h.alive));
    await ferryJson(['lab', 'start', 'h2'], env);
    await allAlive(env);
    const before = await ferryJson<WorkloadInfo[]>(['ps'], env);
    const r = await ferry(['migrate', 'sniffed', '--to', 'h1', '--json'], env);
    expect(r.code).toBe(3);
    const v = JSON.parse(r.stdout) as MigrationView;
    expect(v).toMatchObject({ outcome: 'rolledBack', committed: false, downtimeMs: null, bytesTransferred: 0 });
    expect(v.error).toMatchObject({ code: 'FERRY_BAD_CONFIG', phase: 'preflight' });
    expect(v.error?.message).toMatch(/h2 has no TLS identity/);
    const after = await ferryJson<WorkloadInfo[]>(['ps'], env);
    expect(after.filter((p) => p.name === 'sniffed')).toMatchObject([{ host: 'h2', state: 'running', rootPid: before.find((p) => p.name === 'sniffed')!.rootPid }]);
  });
});
