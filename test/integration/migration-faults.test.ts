// The coordinator, the source agent and the destination agent killed with SIGKILL in each phase
// of a migration, one lab for all (the scenarios and what each checks: helpers/fault-scenarios.ts).
import { labEnv } from './helpers/lab.ts';
import { describeFaults } from './helpers/fault-scenarios.ts';

describeFaults(labEnv('itfault'), ['coordinator', 'source', 'destination'], { standby: true });
