import { readFileSync, readdirSync } from 'node:fs';
import { defineConfig } from 'vitest/config';

// unit: pure logic, fakes at the boundaries, runs in parallel.
// integration-host: real processes checkpointed and restored in the machine's own namespaces
//   (engine and conformance files). One file at a time, and before any lab starts: they count
//   the machine's husks and bind its ports.
// integration: files that bring up their own lab (network namespaces as hosts, their own NATS
//   cluster, agents and coordinators). One at a time too: on two cores two labs side by side
//   took longer than one after the other (each file ran 2-2.5x slower), and their timeouts drew near.
const integration = 'test/integration';
const ownsLab = (file: string) => /\b(labEnv|freshLab)\(/.test(readFileSync(`${integration}/${file}`, 'utf8'));
const files = readdirSync(integration).filter((f) => f.endsWith('.test.ts'));
const labFiles = files.filter(ownsLab).map((f) => `${integration}/${f}`);
const hostFiles = files.filter((f) => !ownsLab(f)).map((f) => `${integration}/${f}`);

const slow = { testTimeout: 120_000, hookTimeout: 120_000, pool: 'forks' as const };
export default defineConfig({
  test: {
    // Unit files beside the host files; then the lab files.
    maxWorkers: 2,
    projects: [
      // A loaded machine can slow a property test tenfold: the timeout catches hangs, not slowness.
      { test: { name: 'unit', include: ['test/unit/**/*.test.ts'], testTimeout: 60_000 } },
      {
        test: {
          name: 'integration-host',
          include: hostFiles,
          ...slow,
          poolOptions: { forks: { singleFork: true } },
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: 'integration',
          include: labFiles,
          ...slow,
          poolOptions: { forks: { singleFork: true } },
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
