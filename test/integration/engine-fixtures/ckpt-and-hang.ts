// Starts a checkpoint and hangs forever at a chosen stage, so a test can kill the checkpointing
// process half way. Usage: node --import tsx ckpt-and-hang.ts PID DIR STAGE
import diagnostics_channel from 'node:diagnostics_channel';
import { checkpoint } from '../../../agent/engine/checkpoint.ts';

const [pidArg, dir, stage] = process.argv.slice(2);
const hang = (msg: { kind?: string }) => {
  if (msg.kind !== stage) return;
  process.stdout.write(`paused ${stage}\n`);
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
};
for (const ch of ['ferry:freeze', 'ferry:checkpoint']) diagnostics_channel.subscribe(ch, (m) => hang(m as { kind?: string }));
checkpoint(Number(pidArg), { imagesDir: dir! });
process.stdout.write('finished without pausing\n');
