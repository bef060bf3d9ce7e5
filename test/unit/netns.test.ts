import { describe, expect, it } from 'vitest';
import { NetnsConfig, WORKLOAD_POOL, allocateAddress, initialNetns, isIpv4, macForAddress } from '../../shared/netns.ts';
import { RunRequest } from '../../shared/workload.ts';

describe('workload addresses', () => {
  it('allocates the lowest free address of the pool, skipping taken ones and .0/.255', () => {
    expect(allocateAddress([])).toBe(WORKLOAD_POOL.first);
    expect(allocateAddress(['10.77.1.1', '10.77.1.2'])).toBe('10.77.1.3');
    const full = Array.from({ length: 254 }, (_, i) => `10.77.1.${i + 1}`);
    expect(allocateAddress(full)).toBe('10.77.2.1');
    expect(allocateAddress(['10.0.0.1'], { first: '10.0.0.1', last: '10.0.0.1' })).toBeNull();
  });

  it('derives a locally administered unicast MAC from the address', () => {
    expect(macForAddress('10.77.1.5')).toBe('02:fe:0a:4d:01:05');
  });

  it('a new workload namespace: loopback, eth0 with its address and MAC, an on-link default route', () => {
    const c = NetnsConfig.parse(initialNetns('10.77.1.9', 16));
    expect(c.interfaces.map((i) => [i.name, i.kind, i.mac])).toEqual([
      ['lo', 'loopback', null],
      ['eth0', 'veth', '02:fe:0a:4d:01:09'],
    ]);
    expect(c.interfaces[1]!.addresses).toEqual([{ family: 'inet', address: '10.77.1.9', prefixLen: 16 }]);
    expect(c.routes).toEqual([{ family: 'inet', dst: 'default', dev: 'eth0', scope: 'link' }]);
  });

  it('run requests take IPv4 addresses only', () => {
    expect(isIpv4('10.77.1.1')).toBe(true);
    for (const bad of ['10.77.1', '256.1.1.1', 'fe80::1', '10.77.1.1/16']) expect(isIpv4(bad), bad).toBe(false);
    expect(RunRequest.safeParse({ name: 'a', command: ['x'], address: '999.1.1.1' }).success).toBe(false);
    expect(RunRequest.parse({ name: 'a', command: ['x'], address: '10.77.3.4' }).address).toBe('10.77.3.4');
  });
});
