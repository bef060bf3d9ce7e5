// The coordinator killed with SIGKILL in each phase of a migration, in a lab of its own (the scenarios
// and what each checks: helpers/fault-scenarios.ts).
import { labEnv } from './helpers/lab.ts';
import { describeFaults } from './helpers/fault-scenarios.ts';

describeFaults(labEnv('itfltco'), 'coordinator', { standby: true });
