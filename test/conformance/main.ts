// npm run conformance [-- --json] [--migrate] [feature...]: one row per feature program; exit 1 on any wrong row.
// --migrate moves each program between two lab hosts (migrate.ts) instead of a checkpoint/restore on this one.
import { migrateAll } from './migrate.ts';
import { formatTable, listFeatures, runAll } from './runner.ts';

const args = process.argv.slice(2);
const json = args.includes('--json');
const asked = args.filter((a) => !a.startsWith('--'));
const known = listFeatures();
const unknown = asked.filter((f) => !known.includes(f));
if (unknown.length > 0) {
  console.error(`unknown feature(s): ${unknown.join(', ')} (known: ${known.join(', ')})`);
  process.exit(2);
}
const features = asked.length > 0 ? asked : known;
const rows = args.includes('--migrate') ? await migrateAll(features) : await runAll(features);
console.log(json ? JSON.stringify(rows, null, 2) : formatTable(rows));
process.exit(rows.some((r) => r.outcome === 'wrong') ? 1 : 0);
