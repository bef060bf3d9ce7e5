// Reshaping a husk's mappings from one layout to the next while keeping the content it holds:
// a live migration's destination fills husks during pre-copy, and the workload keeps mapping,
// unmapping, moving, growing and re-protecting memory meanwhile. Pure: from the layout the husk
// has and the one it must have, the operations, compared page range by page range on what backs
// each range (anonymous memory, a stack, a file at an offset), never on how the kernel happens
// to split it into VMAs. A range whose backing stays keeps its content (only its protection may
// change); one whose backing goes is unmapped; one whose backing is new is mapped fresh (its
// content then arrives whole: the dirty tracker reports a new mapping in full).

export interface MapSpec {
  start: bigint;
  end: bigint;
  perms: string;
  kind: string;
  path?: string;
  fileOffset: bigint;
}

export interface RelayoutPlan {
  unmap: { start: bigint; end: bigint }[];
  /** Fresh mappings: pieces of the next layout's mappings (file offsets adjusted). */
  map: MapSpec[];
  /** Kept ranges whose permissions change. */
  protect: { start: bigint; end: bigint; perms: string }[];
}

const PAGE = 4096n;

/**
 * What backs a range, as far as content is concerned; null for what a husk does not map from a
 * layout (the kernel's special mappings, moved instead, and shared memory, which needs the
 * image's shared objects). Anonymous memory and the heap are alike; a stack grows down; a file
 * mapping is its file at a fixed distance between address and offset; a shared one also
 * depends on whether it may be written (how the file is opened).
 */
export function backingKey(v: Pick<MapSpec, 'start' | 'kind' | 'path' | 'fileOffset' | 'perms'>): string | null {
  switch (v.kind) {
    case 'anon':
    case 'heap':
      return 'anon';
    case 'stack':
      return 'stack';
    case 'file-private':
      return `fp:${v.path ?? ''}:${(v.fileOffset - v.start) / PAGE}`;
    case 'file-shared':
      return `fs:${v.path ?? ''}:${(v.fileOffset - v.start) / PAGE}:${v.perms[1]}`;
    default:
      return null;
  }
}

interface Keyed {
  v: MapSpec;
  key: string;
}

const keyed = (l: readonly MapSpec[]): Keyed[] =>
  l
    .map((v) => ({ v, key: backingKey(v) }))
    .filter((x): x is Keyed => x.key !== null)
    .sort((a, b) => (a.v.start < b.v.start ? -1 : a.v.start > b.v.start ? 1 : 0));

/** The entry covering addr in a sorted, non-overlapping list, moving a cursor forward. */
function cover(list: readonly Keyed[], cur: { i: number }, addr: bigint): Keyed | null {
  while (cur.i < list.length && list[cur.i]!.v.end <= addr) cur.i++;
  const e = list[cur.i];
  return e && e.v.start <= addr && addr < e.v.end ? e : null;
}

export function planRelayout(current: readonly MapSpec[], next: readonly MapSpec[]): RelayoutPlan {
  const a = keyed(current);
  const b = keyed(next);
  const bounds = [...new Set([...a, ...b].flatMap((x) => [x.v.start, x.v.end]))].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
  const plan: RelayoutPlan = { unmap: [], map: [], protect: [] };
  const ca = { i: 0 };
  const cb = { i: 0 };
  let lastMapFrom: MapSpec | null = null;
  for (let k = 0; k + 1 < bounds.length; k++) {
    const lo = bounds[k]!;
    const hi = bounds[k + 1]!;
    const o = cover(a, ca, lo);
    const n = cover(b, cb, lo);
    if (o && (!n || o.key !== n.key)) {
      const last = plan.unmap.at(-1);
      if (last && last.end === lo) last.end = hi;
      else plan.unmap.push({ start: lo, end: hi });
    }
    if (n && (!o || o.key !== n.key)) {
      const last = plan.map.at(-1);
      if (last && lastMapFrom === n.v && last.end === lo) last.end = hi;
      else plan.map.push({ ...n.v, start: lo, end: hi, fileOffset: n.v.kind.startsWith('file') ? n.v.fileOffset + (lo - n.v.start) : n.v.fileOffset });
      lastMapFrom = n.v;
    } else if (n && o && o.v.perms !== n.v.perms) {
      const last = plan.protect.at(-1);
      if (last && last.end === lo && last.perms === n.v.perms) last.end = hi;
      else plan.protect.push({ start: lo, end: hi, perms: n.v.perms });
    }
  }
  return plan;
}
