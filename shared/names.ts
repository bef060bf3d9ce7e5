import { z } from 'zod';

/** A host or workload name: one NATS subject token, a DNS label, and a safe file name. */
export const HostName = z
  .string()
  .regex(/^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$/, 'a name is 1-32 characters of a-z, 0-9 and "-", not starting or ending with "-"');
export const WorkloadName = HostName;
