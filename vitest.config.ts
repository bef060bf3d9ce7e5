import { defineConfig } from 'vitest/config';

// unit: pure logic, fakes at the boundaries, runs in parallel.
// integration: real nats-server, real processes, real network namespaces; one file at a time
// because the lab and the engine's workloads share the machine's pid and network resources.
export default defineConfig({
  test: {
    projects: [
      { test: { name: 'unit', include: ['test/unit/**/*.test.ts'] } },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          pool: 'forks',
          poolOptions: { forks: { singleFork: true } },
        },
      },
    ],
  },
});
