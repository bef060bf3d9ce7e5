import { describe, expect, it } from 'vitest';
import { NetnsConfig, initialNetns, macForAddress } from '../../shared/netns.ts';
import { AddressPool, WorkloadSubnet, isIpv4 } from '../../shared/subnet.ts';
import { RunRequest } from '../../shared/workload.ts';

describe('workload addresses', () => {
  const lab = new AddressPool(WorkloadSubnet.parse({ subnet: '10.77.0.0/16', first: '10.77.1.1', reserved: ['10.77.0.1', '10.77.0.2'] }));

  it('allocates the lowest free address of the range, skipping taken ones, .0/.255 and infrastructure', () => {
    expect(lab.allocate([])).toBe('10.77.1.1');
    expect(lab.allocate(['10.77.1.1', '10.77.1.2'])).toBe('10.77.1.3');
    const full = Array.from({ length: 254 }, (_, i) => `10.77.1.${i + 1}`);
    expect(lab.allocate(full)).toBe('10.77.2.1');
    expect(new AddressPool(WorkloadSubnet.parse({ subnet: '10.0.0.0/24', first: '10.0.0.1', last: '10.0.0.1' })).allocate(['10.0.0.1'])).toBeNull();
    const small = new AddressPool(WorkloadSubnet.parse({ subnet: '192.168.9.0/29', reserved: ['192.168.9.1'] }));
    expect(small.allocate([], new Map([['192.168.9.2', "host h1's address"]]))).toBe('192.168.9.3');
  });

  it('refuses addresses outside the range or the subnet and every infrastructure address', () => {
    const infra = new Map([['10.77.0.11', "host h1's address"]]);
    expect(lab.refusal('10.77.9.9', infra)).toBeNull();
    expect(lab.refusal('10.77.0.1', infra)).toMatch(/infrastructure.*reserved/);
    expect(lab.refusal('10.77.0.11', infra)).toMatch(/infrastructure.*host h1/);
    expect(lab.refusal('10.77.0.5', infra)).toMatch(/outside the workload range 10\.77\.1\.1-10\.77\.255\.254/);
    expect(lab.refusal('192.168.5.5', infra)).toMatch(/outside the workload subnet 10\.77\.0\.0\/16/);
    expect(lab.refusal('10.77.255.255', infra)).toMatch(/broadcast/);
    expect(new AddressPool(WorkloadSubnet.parse({ subnet: '10.1.0.0/24' })).refusal('10.1.0.0')).toMatch(/network address/);
  });

  it('validates the workload subnet setting', () => {
    for (const bad of [{ subnet: '10.77.0.1/16' }, { subnet: '10.77.0.0' }, { subnet: '10.77.0.0/31' }, { subnet: '10.77.0.0/16', first: '10.78.0.1' }, { subnet: '10.77.0.0/16', first: '10.77.2.1', last: '10.77.1.1' }, { subnet: '10.77.0.0/16', reserved: ['x'] }, { subnet: '10.77.0.0/16', pool: 1 }]) {
      expect(WorkloadSubnet.safeParse(bad).success, JSON.stringify(bad)).toBe(false);
    }
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
