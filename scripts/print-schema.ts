/** `npm run schema:print`: writes the sorted SDL to schema/schema.graphql (a test checks drift). */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { printSortedSchema } from '../src/graphql/schema.js';
import { packageRoot } from '../src/paths.js';

const file = path.join(packageRoot(), 'schema', 'schema.graphql');
writeFileSync(file, printSortedSchema());
console.log(`wrote ${path.relative(process.cwd(), file)}`);
