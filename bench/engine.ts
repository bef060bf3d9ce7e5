// Checkpoint/restore time and throughput at 64 MiB, 512 MiB and 2 GiB of workload memory, next
// to process_vm_readv/writev and memcpy measured in the same run on the same machine.
// Usage: node --import tsx bench/engine.ts [sizesMiB...]   (default 64 512 2048)
// Images go to FERRY_BENCH_DIR, else os.tmpdir() (page cache of the root disk). On this VM a
// 2 GiB dump into tmpfs (/dev/shm) ran at 0.3-0.6 GB/s against 1.6-1.9 GB/s into the page cache.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Checkpoint } from '../agent/engine/checkpoint.ts';
import { spawnDetached } from '../agent/engine/process/detached.ts';
import { prepareImageDir, writeImage } from '../agent/engine/image/image-io.ts';
import { readMaps } from '../agent/engine/process/procfs.ts';
import { buildProcess, createHusks, finishProcess, waitPidFree } from '../agent/engine/restore.ts';
import { readImage } from '../agent/engine/image/image-io.ts';
import { addressOf } from '../agent/ffi/libc.ts';
import { vmRead, vmWrite } from '../agent/ffi/syscalls.ts';

const here = dirname(fileURLToPath(import.meta.url));
const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
if (sizes.length === 0) sizes.push(64, 512, 2048);

const imageRoot = process.env.FERRY_BENCH_DIR ?? tmpdir();
const work = mkdtempSync(join(imageRoot, 'ferry-bench-engine-'));
const bin = join(work, 'counter');
try {
  execFileSync('gcc', ['-O2', '-o', bin, join(here, '..', 'test', 'integration', 'engine-fixtures', 'counter.c')]);
} catch (err) {
  rmSync(work, { recursive: true, force: true });
  throw err;
}
process.on('exit', () => rmSync(work, { recursive: true, force: true }));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const gbps = (bytes: number, ms: number) => Number((bytes / 1e9 / (ms / 1000)).toFixed(2));
const lastTick = (log: string) => {
  const m = [...readFileSync(log, 'utf8').matchAll(/^tick (\d+)/gm)];
  if (/^FAIL/m.test(readFileSync(log, 'utf8'))) throw new Error(`workload failed its own check: ${readFileSync(log, 'utf8').split('\n').find((l) => l.startsWith('FAIL'))}`);
  return m.length ? Number(m[m.length - 1]![1]) : -1;
};
async function waitTick(log: string, above: number, ms = 120_000) {
  const end = Date.now() + ms;
  while (lastTick(log) <= above) {
    if (Date.now() > end) throw new Error(`no tick above ${above} in ${log}`);
    await sleep(20);
  }
}

/** process_vm_readv / writev against the workload's ballast (read, then the same bytes written back). */
function vmThroughput(pid: number, sizeMiB: number) {
  const maps = readMaps(pid).filter((m) => m.path === '' && m.perms === 'rw-p');
  const big = maps.reduce((a, m) => (m.end - m.start > a.end - a.start ? m : a));
  const len = Math.min(Number(big.end - big.start), sizeMiB * 1048576);
  const chunk = 4 * 1048576;
  const buf = Buffer.alloc(chunk, 1);
  let t = performance.now();
  for (let off = 0; off + chunk <= len; off += chunk) vmRead(pid, big.start + BigInt(off), buf);
  const readMs = performance.now() - t;
  // Writing into the workload would race with its own writes (adjacent anonymous mappings merge),
  // so writev goes into a touched buffer of this process: the same kernel path, pages already present.
  const target = Buffer.alloc(len, 5);
  const base = addressOf(target);
  t = performance.now();
  for (let off = 0; off + chunk <= len; off += chunk) vmWrite(process.pid, base + BigInt(off), buf);
  const writeMs = performance.now() - t;
  const src = Buffer.alloc(len, 3);
  const dst = Buffer.alloc(len, 4);
  src.copy(dst);
  t = performance.now();
  src.copy(dst);
  const memcpyMs = performance.now() - t;
  return { bytes: len, processVmReadvGBps: gbps(len, readMs), processVmWritevGBps: gbps(len, writeMs), memcpyGBps: gbps(len, memcpyMs) };
}

const results = [];
for (const mib of sizes) {
  const dir = join(work, `w${mib}`);
  mkdirSync(dir);
  const log = join(dir, 'out.log');
  const pid = spawnDetached([bin, 'x', join(dir, 'data.bin'), String(mib - 8 > 0 ? mib - 8 : mib)], { log, cwd: dir });
  try {
    await waitTick(log, 50);
    const images = join(dir, 'img');
    const t0 = performance.now();
    prepareImageDir(images);
    const c = Checkpoint.begin(pid);
    const tFrozen = performance.now();
    c.collect();
    const tCollected = performance.now();
    const bytes = c.dumpMemory(images);
    const tDumped = performance.now();
    writeImage(images, c.image());
    c.kill();
    const tEnd = performance.now();
    const before = lastTick(log);
    waitPidFree(pid, 30_000);
    const img = readImage(images);
    const p = img.processes[0]!;
    const r0 = performance.now();
    const husk = createHusks(img, images).get(p.pid)!;
    const { memoryMs } = buildProcess(husk, p, images);
    finishProcess(husk, p);
    husk.release();
    const restoreMs = performance.now() - r0;
    await waitTick(log, before + 100);
    // After the cycle: the reference buffers (GBs) would otherwise make every fork of this process slow.
    const vm = vmThroughput(pid, mib);
    const row = {
      sizeMiB: mib,
      pagesBytes: bytes,
      checkpoint: {
        totalMs: Number((tEnd - t0).toFixed(1)),
        freezeMs: Number((tFrozen - t0).toFixed(1)),
        collectMs: Number((tCollected - tFrozen).toFixed(1)),
        dumpMs: Number((tDumped - tCollected).toFixed(1)),
        frozenMs: Number((tEnd - tFrozen).toFixed(1)),
        dumpGBps: gbps(bytes, tDumped - tCollected),
      },
      restore: { totalMs: Number(restoreMs.toFixed(1)), memoryMs: Number(memoryMs.toFixed(1)), memoryGBps: gbps(bytes, memoryMs), overallGBps: gbps(bytes, restoreMs) },
      reference: vm,
      workloadCarriedOn: true,
    };
    results.push(row);
    console.log(
      `${String(mib).padStart(5)} MiB: checkpoint ${row.checkpoint.totalMs} ms (dump ${row.checkpoint.dumpGBps} GB/s), restore ${row.restore.totalMs} ms (memory ${row.restore.memoryGBps} GB/s) | process_vm_readv ${vm.processVmReadvGBps} GB/s, writev ${vm.processVmWritevGBps} GB/s, memcpy ${vm.memcpyGBps} GB/s`,
    );
  } finally {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
    rmSync(dir, { recursive: true, force: true });
  }
}
rmSync(work, { recursive: true, force: true });
const out = join(here, 'results', 'engine.json');
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify({ when: new Date().toISOString(), kernel: release(), imageDir: imageRoot, results }, null, 2) + '\n');
console.log(`saved ${out}`);
