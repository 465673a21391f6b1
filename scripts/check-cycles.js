#!/usr/bin/env node
// Fails when the compiled sources contain an import cycle (DESIGN.md: no import cycles).
import madge from 'madge';

const res = await madge('dist/src', { fileExtensions: ['js'], excludeRegExp: [/\.map$/] });
const cycles = res.circular();
if (cycles.length > 0) {
  console.error(`import cycles found (${cycles.length}):`);
  for (const c of cycles) console.error(`  ${c.join(' -> ')}`);
  process.exit(1);
}
console.log(`no import cycles among ${Object.keys(res.obj()).length} modules`);
