// The data plane over real TCP: authentication, integrity and back-pressure.
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../shared/errors.ts';
import { DataListener, connectStream } from '../../agent/transfer/stream.ts';

const auth = { migrationId: 'm-stream-test', secret: randomBytes(32).toString('hex') };

describe('agent-to-agent data stream', () => {
  it('carries frames both ways, intact and in order', async () => {
    const listener = await DataListener.open('127.0.0.1', auth);
    const [sender, receiver] = await Promise.all([connectStream(listener.endpoint, auth), listener.accept({ timeoutMs: 5000 })]);
    const sent = createHash('sha256');
    const got = createHash('sha256');
    const chunks = 64;
    const consume = (async () => {
      for (let i = 0; i < chunks; i++) {
        const f = await receiver.expect<{ seq: number }>('chunk');
        expect(f.header.seq).toBe(i);
        got.update(f.payload);
      }
      await receiver.send({ t: 'ack', digest: got.copy().digest('hex') });
    })();
    for (let i = 0; i < chunks; i++) {
      const payload = randomBytes(1 << 20);
      sent.update(payload);
      await sender.send({ t: 'chunk', seq: i }, payload);
    }
    await consume;
    const ack = await sender.expect<{ digest: string }>('ack');
    expect(ack.header.digest).toBe(sent.digest('hex'));
    expect(sender.bytesSent).toBeGreaterThan(chunks << 20);
    await sender.end();
    expect(await receiver.next()).toBeNull();
  });

  it('refuses a sender with the wrong secret, and still accepts the real one afterwards', async () => {
    const listener = await DataListener.open('127.0.0.1', auth);
    const intruder = connectStream(listener.endpoint, { ...auth, secret: 'wrong' }, { timeoutMs: 3000 });
    await expect(intruder).rejects.toMatchObject({ message: expect.stringMatching(/authentication|closed/) });
    const [sender, receiver] = await Promise.all([connectStream(listener.endpoint, auth), listener.accept({ timeoutMs: 5000 })]);
    await sender.send({ t: 'ping' });
    expect((await receiver.expect('ping')).header.t).toBe('ping');
    sender.destroy();
    receiver.destroy();
  });

  it('a sender refuses a receiver that cannot prove the secret', async () => {
    // A fake receiver that speaks the protocol but does not know the secret.
    const fake = net.createServer((s) => {
      s.write(Buffer.concat(frame({ t: 'hello', migrationId: auth.migrationId, nonce: 'aa' })));
      s.once('data', () => s.write(Buffer.concat(frame({ t: 'welcome', mac: '00'.repeat(32) }))));
    });
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
    const port = (fake.address() as net.AddressInfo).port;
    await expect(connectStream({ host: '127.0.0.1', port }, auth)).rejects.toMatchObject({ code: ErrorCode.InvalidRequest });
    fake.close();
  });

  it('back-pressure: a slow receiver holds the sender instead of letting buffers grow', async () => {
    const listener = await DataListener.open('127.0.0.1', auth);
    const [sender, receiver] = await Promise.all([connectStream(listener.endpoint, auth), listener.accept({ timeoutMs: 5000 })]);
    const payload = Buffer.alloc(4 << 20, 7);
    let sentFrames = 0;
    const pump = (async () => {
      for (let i = 0; i < 64; i++) {
        await sender.send({ t: 'chunk' }, payload);
        sentFrames++;
      }
    })();
    await new Promise((r) => setTimeout(r, 500));
    // Nothing was consumed: the sender is held once the receiver's bound and the kernel buffers fill.
    const inFlightBytes = sentFrames * payload.length;
    expect(inFlightBytes).toBeLessThan(128 << 20);
    expect(sentFrames).toBeLessThan(64);
    for (let i = 0; i < 64; i++) await receiver.expect('chunk');
    await pump;
    expect(sentFrames).toBe(64);
    sender.destroy();
    receiver.destroy();
  });

  it('accept() gives up when cancelled', async () => {
    const listener = await DataListener.open('127.0.0.1', auth);
    const ac = new AbortController();
    const p = listener.accept({ signal: ac.signal });
    ac.abort();
    await expect(p).rejects.toMatchObject({ code: ErrorCode.Cancelled });
  });
});

function frame(header: Record<string, unknown>): Buffer[] {
  const h = Buffer.from(JSON.stringify(header));
  const prefix = Buffer.alloc(8);
  prefix.writeUInt32LE(h.length, 0);
  return [prefix, h];
}
