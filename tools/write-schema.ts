/** Writes schema/fleet.schema.json from the fleet file's zod schema (run: npm run schema). */
import { writeFileSync } from 'node:fs';
import { fleetJsonSchema } from '../src/measure/fleet-file.js';

writeFileSync(
  new URL('../../schema/fleet.schema.json', import.meta.url),
  `${JSON.stringify(fleetJsonSchema(), null, 2)}\n`,
);
