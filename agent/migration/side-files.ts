// The files a source sends beside the image: the workload's registry entry as the source knew
// it, and its network namespace. The destination reads them back as untrusted input.
import type { z } from 'zod';
import { NetnsConfig } from '../../shared/netns.ts';
import { WorkloadCommandFile, readSideFile } from '../../shared/records.ts';
import type { LocalMigration } from './records.ts';

export const WORKLOAD_FILE = 'workload.json';
export const NETNS_FILE = 'netns.json';

/** workload.json beside the image: what the source's registry knew of the workload. */
export type WorkloadFile = z.infer<typeof WorkloadCommandFile>;

export const workloadFile = (m: LocalMigration): WorkloadFile => ({ command: m.workloadCommand, ...(m.resources ?? {}) });

/** workload.json as the destination received it, validated (null: none was sent). */
export const readWorkloadFile = (imageDir: string): WorkloadFile | null => readSideFile(`${imageDir}/${WORKLOAD_FILE}`, WorkloadCommandFile);

/** netns.json as the destination received it, validated (null: the workload shares its host's namespace). */
export const readNetnsFile = (imageDir: string): NetnsConfig | null => readSideFile(`${imageDir}/${NETNS_FILE}`, NetnsConfig);
