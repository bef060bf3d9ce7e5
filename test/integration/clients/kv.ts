// A raw JetStream KV client for tests, run in the lab's client namespace: writes what ferry never
// would (a poisoned record), and reads what a user would check. It connects as one of the lab's
// identities (nothing anonymous reaches the lab's NATS; only a coordinator may write KV).
// Prints one JSON line.
//   kv.ts <lab> <identity> put <bucket> <key> <value>   -> { revision }
//   kv.ts <lab> <identity> get <bucket> <key>           -> { value } (null when absent)
//   kv.ts <lab> <identity> keys <bucket>                -> { keys }
import { Kvm } from '@nats-io/kv';
import { labLayout } from '../../../deploy/lab/layout.ts';
import { labNatsAccess } from '../../../deploy/lab/pki.ts';
import { connectNats } from '../../../shared/nats.ts';
import { streamKeyLister } from '../../../coordinator/kv-keys.ts';

const [lab, identity, op, bucket, key, value] = process.argv.slice(2);
const nc = await connectNats({ ...labNatsAccess(labLayout(lab!), identity!), name: `test-kv-${identity}`, persistent: false });
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
  // Listed as the coordinator lists them (kv.keys() can end early), then only those with a value.
  const kv = await kvm.open(bucket!);
  const keys: string[] = [];
  for (const k of await streamKeyLister(nc, bucket!)()) if ((await kv.get(k))?.operation === 'PUT') keys.push(k);
  out = { keys };
} else throw new Error(`unknown op ${op}`);
process.stdout.write(`${JSON.stringify(out)}\n`);
await nc.close();
