// Parses an AsyncAPI document with the official parser (@asyncapi/parser) and prints every diagnostic
// (errors, warnings, hints) with its location. Exits 1 when there is any error or warning.
// Usage: node asyncapi-lint.mjs spec/asyncapi.yaml
import { readFile } from 'node:fs/promises';
import { Parser, DiagnosticSeverity } from '@asyncapi/parser';

const file = process.argv[2];
if (!file) {
  console.error('usage: node asyncapi-lint.mjs <asyncapi.yaml>');
  process.exit(2);
}
const text = await readFile(file, 'utf8');
const { document, diagnostics } = await new Parser().parse(text, { source: file });
const names = {
  [DiagnosticSeverity.Error]: 'error',
  [DiagnosticSeverity.Warning]: 'warning',
  [DiagnosticSeverity.Information]: 'info',
  [DiagnosticSeverity.Hint]: 'hint',
};
let failing = 0;
for (const d of diagnostics) {
  const line = (d.range?.start?.line ?? -1) + 1;
  const at = d.path?.length ? ` at #/${d.path.join('/')}` : '';
  console.log(`${file}:${line}: ${names[d.severity] ?? d.severity} ${d.code}: ${d.message}${at}`);
  if (d.severity === DiagnosticSeverity.Error || d.severity === DiagnosticSeverity.Warning) failing += 1;
}
if (!document || failing > 0) {
  console.error(`${file}: ${failing} error(s) or warning(s) from @asyncapi/parser`);
  process.exit(1);
}
console.log(`${file}: valid AsyncAPI ${document.version()} (0 errors, 0 warnings)`);
