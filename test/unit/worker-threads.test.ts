// The agent's worker threads (agent/ffi/netns-worker.ts, agent/heartbeat-worker.ts): what they
// accept from the main thread, and that the namespace thread starts from the TypeScript sources.
import { describe, expect, it } from 'vitest';
import { parseNamespaceRequest } from '../../agent/ffi/netns-channel.ts';
import { readInIpcNamespace } from '../../agent/ffi/netns-thread.ts';
import { SyscallError } from '../../agent/ffi/syscalls.ts';
import { parseHeartbeatUpdate } from '../../agent/heartbeat-channel.ts';

describe('namespace thread requests', () => {
  it('accepts a socket or a read request as it was sent', () => {
    const socket = { op: 'socket', ns: '/run/netns/w1', domain: 16, type: 3, protocol: 0 };
    const read = { op: 'read', ns: '/proc/42/ns/ipc', files: ['/proc/sysvipc/shm', '/proc/sysvipc/sem'] };
    expect(parseNamespaceRequest(socket)).toEqual(socket);
    expect(parseNamespaceRequest(read)).toEqual(read);
    expect(parseNamespaceRequest({ ...read, files: [] })).toEqual({ ...read, files: [] });
  });

  it('refuses anything else', () => {
    const socket = { op: 'socket', ns: '/run/netns/w1', domain: 16, type: 3, protocol: 0 };
    for (const bad of [
      null,
      'socket',
      42,
      { op: 'setns', ns: '/run/netns/w1' },
      { ...socket, ns: '' },
      { ...socket, ns: 7 },
      { ...socket, domain: 1.5 },
      { ...socket, type: '3' },
      { op: 'socket', ns: '/run/netns/w1', domain: 16, type: 3 },
      { op: 'read', ns: '/proc/42/ns/ipc' },
      { op: 'read', ns: '/proc/42/ns/ipc', files: '/proc/sysvipc/shm' },
      { op: 'read', ns: '/proc/42/ns/ipc', files: ['/proc/sysvipc/shm', 3] },
    ])
      expect(parseNamespaceRequest(bad), JSON.stringify(bad)).toBeNull();
  });

  it('starts from the sources and answers with the errno of what failed', () => {
    // Opening the namespace fails before any setns: no privilege needed.
    const read = () => readInIpcNamespace('/nonexistent/ns/ipc', ['/proc/sysvipc/shm']);
    expect(read).toThrow(SyscallError);
    expect(read).toThrow(/read in \/nonexistent\/ns\/ipc failed: ENOENT/);
  });
});

describe('heartbeat thread updates', () => {
  it('accepts the load and the claims', () => {
    const load = { kind: 'load', load: [] };
    const claims = { kind: 'claims', claims: [{ name: 'w1', address: '10.77.1.1' }] };
    expect(parseHeartbeatUpdate(load)).toEqual(load);
    expect(parseHeartbeatUpdate(claims)).toEqual(claims);
  });

  it('refuses anything else', () => {
    for (const bad of [null, [], { load: [] }, { kind: 'load' }, { kind: 'claims', claims: {} }, { kind: 'facts', facts: [] }]) expect(parseHeartbeatUpdate(bad), JSON.stringify(bad)).toBeNull();
  });
});
