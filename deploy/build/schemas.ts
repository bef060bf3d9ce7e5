// `npm run schemas`: writes docs/schemas/*.json from the CLI's zod schemas (cli/schemas.ts).
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLI_OUTPUTS, schemaFileText } from '../../cli/schemas.ts';

const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../docs/schemas');
mkdirSync(dir, { recursive: true });
for (const name of Object.keys(CLI_OUTPUTS) as (keyof typeof CLI_OUTPUTS)[]) writeFileSync(path.join(dir, `${name}.json`), schemaFileText(name));
process.stdout.write(`schemas: ${Object.keys(CLI_OUTPUTS).length} files in docs/schemas/\n`);
