// A raw JetStream KV client for tests, run in the lab's client namespace: writes what ferry never
// would (a poisoned record), and reads what a user would check. Prints one JSON line.
//   kv.ts <nats url> put <bucket> <key> <value>   -> { revision }
//   kv.ts <nats url> get <bucket> <key>           -> { value } (null when absent)
//   kv.ts <nats url> keys <bucket>                -> { keys }
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';

const [url, op, bucket, key, value] = process.argv.slice(2);
const nc = await connect({ servers: url!, timeout: 5_000 });
const kvm = new Kvm(nc);
let out: unknown;
if (op === 'put') {
  const kv = await kvm.open(bucket!);
  out = { revision: await kv.put(key!, new TextEncoder().encode(value!)) };
} else if (op === 'get') {
  const kv = await kvm.open(bucket!);
  const e = await kv.get(key!);
  out = { value: e && e.operation === 'PUT' ? e.string() : null };
} else if (op === 'keys') {
  const kv = await kvm.open(bucket!);
  const keys: string[] = [];
  for await (const k of await kv.keys()) keys.push(k);
  out = { keys: keys.sort() };
} else throw new Error(`unknown op ${op}`);
process.stdout.write(`${JSON.stringify(out)}\n`);
await nc.close();
