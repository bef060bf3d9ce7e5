import { readFileSync, readdirSync } from 'node:fs';
import { defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

// unit: pure logic, fakes at the boundaries, runs in parallel.
// integration-host: real processes checkpointed and restored in the machine's own namespaces
//   (engine and conformance files). One file at a time, and before any lab starts: they count
//   the machine's husks and bind its ports.
// integration: files that bring up their own lab (network namespaces as hosts, their own NATS
//   cluster, agents and coordinators). Labs are apart by name, so two files run side by side;
//   most of a lab test's time is waiting for daemons, heartbeats and timeouts, not CPU.
const integration = 'test/integration';
const ownsLab = (file: string) => /\b(labEnv|freshLab)\(/.test(readFileSync(`${integration}/${file}`, 'utf8'));
const files = readdirSync(integration).filter((f) => f.endsWith('.test.ts'));
const labFiles = files.filter(ownsLab).map((f) => `${integration}/${f}`);
const hostFiles = files.filter((f) => !ownsLab(f)).map((f) => `${integration}/${f}`);

// Longest lab files first, so that the two lanes end together; a fresh clone has no timings of
// its own to go by (vitest's cache). Measured on 2 cores under load; the rest follow.
const longestFirst = [
  'control-plane-heal', 'live-migration', 'nats-node-loss', 'migration.test', 'migration-faults-source',
  'migration-faults-destination', 'migration-faults-coordinator', 'fleet', 'migration-network',
];
class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const rank = (f: TestSpecification) => {
      const i = longestFirst.findIndex((name) => f.moduleId.includes(`/${name}`));
      return i < 0 ? longestFirst.length : i;
    };
    return (await super.sort(files)).sort((a, b) => rank(a) - rank(b));
  }
}

const slow = { testTimeout: 120_000, hookTimeout: 120_000, pool: 'forks' as const };
export default defineConfig({
  test: {
    // Two at a time: unit files beside the host files, then two lab files side by side.
    maxWorkers: 2,
    sequence: { sequencer: LongestFirst },
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
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
