// What the destination holds of one migration in memory only (lost if the agent restarts; what
// must outlive it, the held tree's pids and cgroup, is on record).
import type { FerryError } from '../../shared/errors.ts';
import type { VerifyReport } from '../../shared/verify.ts';
import type { Husk } from '../engine/process/husk.ts';
import type { readImage } from '../engine/image/image-io.ts';
import type { DataConnection, StreamEndpoint } from '../transfer/stream.ts';
import type { PostcopyDestination } from './postcopy-destination.ts';
import type { ExpectedStream } from '../transfer/stream-server.ts';
import type { TransferStats } from './image-transfer.ts';
import type { LandedNetns } from '../net/handoff.ts';
import type { PrecopyDestination } from './precopy-destination.ts';

export type BuildResult = { pid: number; verify?: VerifyReport };

export interface DestinationSession {
  /** The image arriving over the data stream. */
  receiving?: Promise<TransferStats>;
  /** The data stream endpoint handed out (a replayed receive hands out the same). */
  endpoint?: StreamEndpoint;
  /** The stream registered at the listener and not yet connected. */
  expected?: ExpectedStream;
  /** A live migration's tree being built during pre-copy (warm restore). */
  warm?: PrecopyDestination;
  /** The held tree built and verified once the stream ended (the restore step collects it). */
  prebuilt?: Promise<BuildResult>;
  /** The restored tree, stopped, waiting for the commit, with its network namespace. */
  held?: Built;
  /** A tree that failed verification stays failed (a replayed restore must not commit it). */
  verifyFailed?: FerryError;
  /** A warm build that failed took the pre-copied memory with it: its error answers every later build. */
  warmFailed?: FerryError;
  /** Post-copy's faults channel (a migration that may switch over to post-copy opens it at round 1). */
  faults?: Promise<DataConnection>;
  /** After a post-copy switchover: the migration's stream, kept open for the push. */
  pushStream?: DataConnection;
  /** Post-copy running here after the resume, until every page arrived. */
  postcopy?: PostcopyDestination;
  /** The discard running (the coordinator's and this agent's own, see reconcile.ts). */
  discarding?: Promise<{ done: true }>;
  /** Puts the agent's priority back once the tree runs or is discarded (switchover-priority.ts). */
  lowerPriority?: () => void;
}

export interface Built {
  husks: Map<number, Husk>;
  image: ReturnType<typeof readImage>;
  net: LandedNetns | null;
  /** Held frozen and untraced (see engine/process/hold.ts), not in ptrace-stop. */
  frozen?: boolean;
  /** Held in ptrace-stop with its threads' state restored already (no cgroup v2 here). */
  threadsDone?: boolean;
  /** The tree lacks pages its source still holds: post-copy, ready to start at the resume. */
  postcopy?: PostcopyDestination;
}

export const rootHusk = (b: Built): Husk => b.husks.get(b.image.processes[0]!.pid)!;
