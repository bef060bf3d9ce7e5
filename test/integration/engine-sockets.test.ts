// Sockets through checkpoint and restore on one host, with the network handed over the way a
// migration does it: a server in a network namespace of its own serves a client in another
// namespace across a bridge (all three namespaces made by this test). Lock the server's
// namespace, checkpoint (the original dies, its connections close in repair mode), delete the
// namespace and rebuild it from its dumped configuration (same address and MAC), restore into
// it, attach and announce: the client's connections carry on with no reset and every byte
// checked both ways, including what was in flight; the listener accepts, UDP answers, a unix
// pair keeps its queued bytes. Also: what the engine cannot carry is refused at preflight.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { checkpoint } from '../../agent/engine/checkpoint.ts';
import { readImage } from '../../agent/engine/image/image-io.ts';
import type { Image } from '../../shared/image-format.ts';
import { restore } from '../../agent/engine/restore.ts';
import { announce, openAnnouncer } from '../../agent/net/announce.ts';
import { dumpNetns } from '../../agent/net/dump.ts';
import { ipBatch, netnsPath, run } from '../../agent/net/exec.ts';
import type { NetnsHandle } from '../../agent/net/handle.ts';
import { attachNetns, lockNetwork, unlockNetwork } from '../../agent/net/lock.ts';
import { rebuildNetns, removeNetns } from '../../agent/net/rebuild.ts';
import { ErrorCode } from '../../shared/errors.ts';
import { initialNetns } from '../../shared/netns.ts';
import { adopt, buildFixture, cleanup, expectFerryError, procState, sealInheritedFds, startWorkload, tempDir, waitFor } from './engine-fixtures/helpers.ts';

const tag = `fs${process.pid % 100000}`;
const HOST_NS = `${tag}h`;
const SRV = '10.78.0.10';
const CLI = '10.78.0.20';

type Status = { ok: boolean; error: string } & Record<string, unknown>;
const readStatus = (file: string): Status | null => {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Status;
  } catch {
    return null;
  }
};
/** A status file that says ok; throws with the workload's own error otherwise. */
function okStatus(file: string): Status | undefined {
  const s = readStatus(file);
  if (s && !s.ok) throw new Error(`${file}: ${s.error}`);
  return s ?? undefined;
}

/** Tcp counters of a namespace (/proc/net/snmp shows the reader's namespace). */
function tcpCounters(nsPath: string): Record<string, number> {
  const lines = execFileSync('nsenter', [`--net=${nsPath}`, '--', 'cat', '/proc/net/snmp'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.startsWith('Tcp:'));
  const [names, values] = lines.map((l) => l.split(/\s+/).slice(1));
  return Object.fromEntries((names ?? []).map((n, i) => [n, Number(values?.[i])]));
}


let srv: NetnsHandle;
let cli: NetnsHandle;

beforeAll(async () => {
  sealInheritedFds();
  // The "host": a namespace with a bridge, taking both namespaces' veths.
  await run('ip', ['netns', 'add', HOST_NS]);
  await ipBatch(netnsPath(HOST_NS), ['link set lo up', 'link add br0 type bridge stp_state 0 forward_delay 0', 'link set br0 up']);
  srv = await rebuildNetns(initialNetns(SRV, 24), { name: `${tag}s`, bridge: 'br0', hostNetns: netnsPath(HOST_NS) });
  cli = await rebuildNetns(initialNetns(CLI, 24), { name: `${tag}c`, bridge: 'br0', hostNetns: netnsPath(HOST_NS) });
});

afterEach(() => cleanup());

afterAll(async () => {
  cleanup();
  for (const h of [srv, cli]) if (h) await removeNetns(h);
  await run('ip', ['netns', 'delete', HOST_NS], { allowFail: true });
});

/**
 * What a migration does with the server's network, on one host: lock, checkpoint (the original
 * dies), rebuild the namespace from its dumped configuration outside the bridge, restore into
 * it, and attach and announce just before the restored connections leave repair mode.
 */
/**
 * Lock, checkpoint, rebuild the namespace, restore. `ready`, when given, must hold once the
 * network is locked (the queues then change only by the workload's own reads); until it does
 * the network is let go again and the handover waits for it.
 */
async function handover(pid: number, ready?: () => boolean): Promise<{ pid: number; image: Image; figures: Record<string, number> }> {
  const cfg = await dumpNetns(pid);
  const images = tempDir('img');
  let t0 = performance.now();
  lockNetwork(srv);
  while (ready && !ready()) {
    unlockNetwork(srv);
    await waitFor('the state the handover needs', ready, 20_000);
    t0 = performance.now();
    lockNetwork(srv);
  }
  const ck = checkpoint(pid, { imagesDir: images });
  const image = readImage(images);
  const tr = performance.now();
  await removeNetns(srv);
  srv = await rebuildNetns(cfg, { name: `${tag}s`, bridge: 'br0', hostNetns: netnsPath(HOST_NS), attach: false });
  const rebuildMs = performance.now() - tr;
  const announcer = openAnnouncer(srv, cfg);
  let tUnlock = 0;
  const ts = performance.now();
  try {
    const h = srv;
    const rr = restore(images, {
      netns: h.path,
      beforeRun: () => {
        attachNetns(h);
        announcer.send();
        tUnlock = performance.now();
      },
    });
    adopt(rr.pid);
    const figures = { lockToUnlockMs: Math.round(tUnlock - t0), frozenMs: Math.round(ck.frozenMs), rebuildMs: Math.round(rebuildMs), restoreMs: Math.round(performance.now() - ts) };
    return { pid: rr.pid, image, figures };
  } finally {
    announcer.close();
  }
}

describe('engine: sockets and the network handover', () => {
  it('TCP with data in flight both ways, a listener, UDP and a unix pair survive lock, checkpoint, namespace rebuild and restore, twice', { timeout: 180_000 }, async () => {
    const server = buildFixture('netserver');
    const client = buildFixture('netclient');
    // A container (pid 1 of its own pid namespace) in the server namespace, as `ferry run` makes them.
    const w = startWorkload(['nsenter', `--net=${srv.path}`, '--', 'unshare', '--pid', '--fork', '--mount-proc', server, '{dir}/server.json', '{dir}/srv.sock', '{dir}/drain'], 'netsrv');
    const root = await waitFor('container init', () => Number(readFileSync(`/proc/${w.pid}/task/${w.pid}/children`, 'utf8').trim()) || undefined);
    adopt(root);
    const serverStatus = join(w.dir, 'server.json');
    await waitFor('the server', () => okStatus(serverStatus));
    const stream = startWorkload(['nsenter', `--net=${cli.path}`, '--', client, 'stream', SRV, '7000', '{dir}/stream.json'], 'netcli');
    const ping = startWorkload(['nsenter', `--net=${cli.path}`, '--', client, 'ping', SRV, '7000', '{dir}/ping.json'], 'netcli');
    const streamStatus = join(stream.dir, 'stream.json');
    const pingStatus = join(ping.dir, 'ping.json');
    const serverRx = () => ((okStatus(serverStatus)?.streams as { rx: number; tx: number }[] | undefined) ?? [])[0]?.rx ?? 0;
    const clientRx = () => Number(okStatus(streamStatus)?.rx ?? 0);
    await waitFor('both ends of the stream moving', () => serverRx() > 40_000 && clientRx() > 40_000, 20_000);
    await waitFor('pings', () => Number(okStatus(pingStatus)?.count ?? 0) > 20);

    let pid = root;
    const figures: Record<string, number>[] = [];
    for (let round = 0; round < 2; round++) {
      const cfg = await dumpNetns(pid);
      expect(cfg.interfaces.find((i) => i.name === 'eth0')).toMatchObject({ mac: '02:fe:0a:4e:00:0a', addresses: [{ address: SRV, prefixLen: 24 }] });
      const pingBefore = Number(okStatus(pingStatus)?.maxRttMs ?? 0);
      // What the image is checked for below: bytes waiting in both queues of a server connection
      // (the slow readers fill them, but only once the stream has run a while, also after a restore).
      const bothQueuesHold = () =>
        execFileSync('nsenter', [`--net=${srv.path}`, 'ss', '-tnH', 'state', 'established'], { encoding: 'utf8' })
          .split('\n')
          .some((l) => {
            const [rq = 0, sq = 0] = l.trim().split(/\s+/).map(Number);
            return rq > 0 && sq > 0;
          });
      await waitFor('bytes in both queues of a server connection', bothQueuesHold);
      const hand = await handover(pid, bothQueuesHold);
      {
        const img = hand.image;
        expect(img.ownNetns).toBe(true);
        const inet = img.shared.filter((s) => s.kind === 'inet');
        expect(inet.find((s) => s.state === 'listen')).toMatchObject({ local: { port: 7000 }, opts: { reuseaddr: true } });
        expect(inet.find((s) => s.type === 2)).toMatchObject({ state: 'bound', local: { port: 7001 } });
        const conns = inet.filter((s) => s.state === 'established');
        expect(conns).toHaveLength(2);
        // The stream is read slowly at both ends: bytes wait in the server's receive queue and in its send queue.
        const busy = conns.map((c) => ({ recv: Buffer.from(c.tcp!.recvQueue, 'base64').length, send: Buffer.from(c.tcp!.sendQueue, 'base64').length }));
        expect(busy.some((b) => b.recv > 0 && b.send > 0)).toBe(true);
        expect(img.shared.find((s) => s.kind === 'unix-socket')).toMatchObject({ listening: true, name: join(w.dir, 'srv.sock') });
        expect(img.shared.find((s) => s.kind === 'socketpair')?.data.map((d) => Buffer.from(d, 'base64').length)).toEqual(expect.arrayContaining([1000, 700]));
      }
      pid = hand.pid;

      const rx0 = serverRx();
      const crx0 = clientRx();
      await waitFor('the stream moving again at both ends', () => serverRx() > rx0 + 100_000 && clientRx() > crx0 + 100_000, 30_000);
      const pingNow = await waitFor('pings again', () => okStatus(pingStatus));
      figures.push({ ...hand.figures, clientPauseMs: Math.max(pingBefore, Number(pingNow.maxRttMs)) });
    }
    console.log('network handover figures (ms):', JSON.stringify(figures));

    // A new connection is accepted by the restored listener, UDP answers at the same address.
    const nsCli = ['nsenter', `--net=${cli.path}`, '--', client];
    expect(execFileSync(nsCli[0]!, [...nsCli.slice(1), 'hello', SRV, '7000'], { encoding: 'utf8' })).toMatch(/^hello \d+/);
    expect(execFileSync(nsCli[0]!, [...nsCli.slice(1), 'udp', SRV, '7001'], { encoding: 'utf8' }).trim()).toBe('ping-udp');
    // The unix listener accepts (a path name reaches it from any namespace); the pair kept its bytes.
    const hello = await new Promise<string>((resolve, reject) => {
      const s = createConnection(join(w.dir, 'srv.sock'));
      let got = '';
      s.on('data', (d) => (got += d.toString()));
      s.on('end', () => resolve(got));
      s.on('error', reject);
    });
    expect(hello).toBe('hello-unix\n');
    writeFileSync(join(w.dir, 'drain'), '');
    await waitFor('the unix pair checked', () => (okStatus(serverStatus)?.unix !== 'pending' ? okStatus(serverStatus) : undefined));
    expect(okStatus(serverStatus)?.unix).toBe('ok');
    // No reset anywhere: the client never saw one, neither side ever sent one.
    for (const [name, ns] of [['client', cli.path], ['server', srv.path]] as const) {
      const c = tcpCounters(ns);
      expect({ name, resets: c.EstabResets, sent: c.OutRsts }).toEqual({ name, resets: 0, sent: 0 });
    }
    expect(okStatus(streamStatus)?.ok).toBe(true);
    expect(okStatus(pingStatus)?.ok).toBe(true);
  });

  it('an IPv6 connection with both ends in the tree: queued bytes both ways and socket options come back', { timeout: 60_000 }, async () => {
    const py = [
      'import os, socket, sys, time',
      'T = socket.IPPROTO_TCP',
      'l = socket.socket(socket.AF_INET6); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l.bind(("::1", 7200)); l.listen()',
      'c = socket.create_connection(("::1", 7200)); a, _ = l.accept()',
      'c.setsockopt(T, socket.TCP_NODELAY, 1); c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1); c.setsockopt(T, socket.TCP_KEEPIDLE, 77)',
      'c.sendall(b"A" * 50000); a.sendall(b"B" * 30000)',
      'drain, out = sys.argv[1], sys.argv[2]',
      'while not os.path.exists(drain): time.sleep(0.01)',
      'def take(s, n):',
      '  b = b""',
      '  while len(b) < n: b += s.recv(n - len(b))',
      '  return b',
      'ok = take(a, 50000) == b"A" * 50000 and take(c, 30000) == b"B" * 30000',
      'opts = (c.getsockopt(T, socket.TCP_NODELAY), c.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE), c.getsockopt(T, socket.TCP_KEEPIDLE))',
      'c.sendall(b"more"); ok = ok and take(a, 4) == b"more"',
      'open(out, "w").write(("ok" if ok else "bad") + " %d %d %d" % opts)',
      'while True: time.sleep(1)',
    ].join('\n');
    const w = startWorkload(['nsenter', `--net=${srv.path}`, '--', 'unshare', '--pid', '--fork', '--mount-proc', 'python3', '-c', py, '{dir}/drain', '{dir}/result'], 'v6');
    const root = await waitFor('container init', () => Number(readFileSync(`/proc/${w.pid}/task/${w.pid}/children`, 'utf8').trim()) || undefined);
    adopt(root);
    const tcp6 = () => execFileSync('nsenter', [`--net=${srv.path}`, '--', 'cat', '/proc/net/tcp6'], { encoding: 'utf8' });
    await waitFor('both connections with bytes queued', () => (tcp6().match(/ 01 [0-9A-F]{8}:([0-9A-F]{8}) /g) ?? []).filter((m) => !m.includes(':00000000')).length >= 2);
    const images = tempDir('img');
    checkpoint(root, { imagesDir: images });
    const img = readImage(images);
    const conns = img.shared.filter((x) => x.kind === 'inet' && x.state === 'established');
    expect(conns.map((x) => x.kind === 'inet' && x.family)).toEqual([10, 10]);
    expect(conns.map((x) => (x.kind === 'inet' ? Buffer.from(x.tcp!.recvQueue, 'base64').length : 0)).sort((a, b) => a - b)).toEqual([30000, 50000]);
    const rr = restore(images, { netns: srv.path });
    adopt(rr.pid);
    writeFileSync(join(w.dir, 'drain'), '');
    const result = await waitFor('the workload checking its bytes', () => (existsSync(join(w.dir, 'result')) && readFileSync(join(w.dir, 'result'), 'utf8')) || undefined);
    expect(result).toBe('ok 1 1 77');
  });

  it('half-closed connections (fin-wait1 with a FIN still to send, fin-wait2) come back: the peer gets every byte, then EOF, and can still send', { timeout: 90_000 }, async () => {
    const server = [
      'import socket, sys, time',
      'l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l.bind(("0.0.0.0", 7300)); l.listen()',
      'a, _ = l.accept(); b, _ = l.accept()',
      'a.setblocking(False)',
      'data = bytes(i * 7 % 251 for i in range(3_000_000)); sent = 0',
      'while sent < len(data):',
      '  try: sent += a.send(data[sent:])',
      '  except BlockingIOError: break',
      'a.shutdown(socket.SHUT_WR)',
      'b.sendall(b"x" * 1000); b.shutdown(socket.SHUT_WR)',
      'open(sys.argv[1], "w").write(str(sent))',
      'got = b""',
      'while len(got) < 5: got += b.recv(5 - len(got))',
      'open(sys.argv[2], "w").write(got.decode())',
      'while True: time.sleep(1)',
    ].join('\n');
    const client = [
      'import os, socket, sys, time',
      'def dial():',
      '  for i in range(200):',
      '    try: return socket.create_connection(("' + SRV + '", 7300))',
      '    except OSError: time.sleep(0.05)',
      'a = dial(); b = dial()',
      'def drain(s, check):',
      '  n = 0; ok = True',
      '  while True:',
      '    d = s.recv(65536)',
      '    if not d: return n, ok',
      '    if check: ok = ok and d == bytes((n + i) * 7 % 251 for i in range(len(d)))',
      '    n += len(d)',
      'nb, _ = drain(b, False)',
      'while not os.path.exists(sys.argv[1]): time.sleep(0.01)',
      'na, ok = drain(a, True)',
      'b.sendall(b"after")',
      'open(sys.argv[2], "w").write("%d %d %s" % (na, nb, "intact" if ok else "corrupt"))',
      'while True: time.sleep(1)',
    ].join('\n');
    const s = startWorkload(['nsenter', `--net=${srv.path}`, '--', 'unshare', '--pid', '--fork', '--mount-proc', 'python3', '-c', server, '{dir}/sent', '{dir}/got'], 'finsrv');
    const root = await waitFor('container init', () => Number(readFileSync(`/proc/${s.pid}/task/${s.pid}/children`, 'utf8').trim()) || undefined);
    adopt(root);
    const c = startWorkload(['nsenter', `--net=${cli.path}`, '--', 'python3', '-c', client, '{dir}/go', '{dir}/result'], 'fincli');
    const read = (f: string) => (existsSync(f) && readFileSync(f, 'utf8')) || undefined;
    const sent = Number(
      await waitFor('the server half-closing both', () => read(join(s.dir, 'sent')), 20_000).catch((err: Error) => {
        throw new Error(`${err.message}; server: ${read(s.log) ?? ''} client: ${read(c.log) ?? ''}`);
      }),
    );
    // tcp states in the server's namespace: 04 fin-wait1 (the client reads nothing yet), 05 fin-wait2 (it read all and EOF).
    const states = () => execFileSync('nsenter', [`--net=${srv.path}`, '--', 'cat', '/proc/net/tcp'], { encoding: 'utf8' });
    const inState = (st: string) => new RegExp(`:1C84 [0-9A-F]{8}:[0-9A-F]{4} ${st} `).test(states());
    await waitFor('fin-wait1 and fin-wait2', () => inState('04') && inState('05'));
    const { image } = await handover(root);
    const tcp = image.shared.filter((x) => x.kind === 'inet' && x.tcp).map((x) => (x.kind === 'inet' ? [x.state, x.tcp!.fin] : []));
    expect(tcp).toEqual(expect.arrayContaining([['fin-wait1', 'unsent'], ['fin-wait2', 'sent']]));
    writeFileSync(join(c.dir, 'go'), '');
    expect(await waitFor('the client draining', () => read(join(c.dir, 'result')), 30_000)).toBe(`${sent} 1000 intact`);
    expect(await waitFor('the server receiving on its half-closed connection', () => read(join(s.dir, 'got')), 30_000)).toBe('after');
  });

  it('refuses a TCP connection its peer has closed (close-wait) at preflight, naming pid, fd and kind, and leaves the workload running', async () => {
    const py = [
      'import socket,time',
      "l=socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l.bind(('127.0.0.1', 7100)); l.listen()",
      "c=socket.create_connection(('127.0.0.1', 7100)); a,_=l.accept(); c.close()",
      'while True: time.sleep(0.01)',
    ].join('\n');
    const w = startWorkload(['nsenter', `--net=${srv.path}`, '--', 'python3', '-c', py]);
    await waitFor('close-wait', () => /:1BBC \S+ 08 /.test(execFileSync('nsenter', [`--net=${srv.path}`, '--', 'cat', '/proc/net/tcp'], { encoding: 'utf8' })));
    const err = await expectFerryError(() => checkpoint(w.pid, { imagesDir: tempDir('img') }), ErrorCode.Unsupported);
    expect(err.message).toMatch(new RegExp(`^pid ${w.pid} fd \\d+: TCPv4 socket in state close-wait is not supported \\(socket:\\[\\d+\\] 127\\.0\\.0\\.1:7100 -> 127\\.0\\.0\\.1:\\d+\\)`));
    expect(err.details).toMatchObject({ pid: w.pid, kind: 'TCPv4 socket in state close-wait' });
    expect(readFileSync(`/proc/${w.pid}/status`, 'utf8')).toMatch(/TracerPid:\s+0\n/);
    expect(['S', 'R']).toContain(procState(w.pid));
  });

  it('refuses a unix socket whose peer is outside the process tree', async () => {
    const path = join(tempDir('unix'), 'outside.sock');
    const server: Server = createServer((s) => s.on('error', () => undefined));
    await new Promise<void>((r) => server.listen(path, r));
    try {
      // The socket exists (fd 3) before it is connected: the marker says connect() returned.
      const connected = `${path}.connected`;
      const w = startWorkload(['python3', '-c', `import socket,time\ns=socket.socket(socket.AF_UNIX)\ns.connect(${JSON.stringify(path)})\nopen(${JSON.stringify(connected)}, 'w').close()\nwhile True: time.sleep(0.01)`]);
      await waitFor('the connection', () => existsSync(connected));
      const err = await expectFerryError(() => checkpoint(w.pid, { imagesDir: tempDir('img') }), ErrorCode.Unsupported);
      expect(err.message).toMatch(new RegExp(`^pid ${w.pid} fd 3: unix socket is not supported \\(socket:\\[\\d+\\]: its peer is outside the process tree\\)`));
    } finally {
      server.close();
    }
  });

  it('a gratuitous ARP (and an unsolicited NA for IPv6) from the namespace teaches the bridge where its MAC is', async () => {
    const port = srv.ports[0]!.hostVeth;
    const fdb = () => execFileSync('bridge', ['-n', HOST_NS, 'fdb', 'show', 'br', 'br0'], { encoding: 'utf8' });
    await ipBatch(netnsPath(HOST_NS), [`link set ${port} type bridge_slave fdb_flush`]);
    expect(fdb()).not.toMatch(new RegExp(`02:fe:0a:4e:00:0a dev ${port} master`));
    await ipBatch(srv.path, ['addr add fd00:78::10/64 dev eth0 nodad']);
    const cfg = await dumpNetns(srv.path);
    expect(announce(srv, cfg)).toBe(3); // request and reply form for its IPv4 address, one advertisement for the IPv6 one
    await waitFor('the bridge entry', () => new RegExp(`02:fe:0a:4e:00:0a dev ${port} master br0`).test(fdb()));
  });
});
