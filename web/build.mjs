// Builds the console (web/src) into web/dist, which is committed and built into the chatbox binary:
// the two pages, one bundled and minified script per page (on the generated client, generated/typescript)
// and one style sheet. Writes web/dist/BUILD-SOURCES.txt: the SHA-256 of every input and every output, which
// the Rust test `repo::console` compares with the files, so a change to an input without a rebuild (or an
// edited output) fails the tests. `node build.mjs --out DIR` builds elsewhere (scripts/console.sh compares).
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, copyFileSync } from "node:fs";
import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const web = dirname(fileURLToPath(import.meta.url));
const root = dirname(web);
const outArg = process.argv.indexOf("--out");
const out = outArg > 0 ? process.argv[outArg + 1] : join(web, "dist");

/** Every file below `dir`, sorted, as absolute paths. */
function filesBelow(dir) {
  const found = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) found.push(...filesBelow(path));
    else found.push(path);
  }
  return found.sort();
}

const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");
const slash = (path) => path.split(sep).join("/");

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "admin"), { recursive: true });
await esbuild.build({
  entryPoints: { chat: join(web, "src/chat/main.ts"), admin: join(web, "src/admin/main.ts") },
  outdir: join(out, "assets"),
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  legalComments: "none",
  charset: "utf8",
  tsconfig: join(web, "tsconfig.json"),
  logLevel: "warning",
});
await esbuild.build({
  entryPoints: { console: join(web, "src/console.css") },
  outdir: join(out, "assets"),
  bundle: true,
  minify: true,
  logLevel: "warning",
});
copyFileSync(join(web, "src/chat/index.html"), join(out, "index.html"));
copyFileSync(join(web, "src/admin/index.html"), join(out, "admin/index.html"));
copyFileSync(join(web, "src/favicon.svg"), join(out, "assets/favicon.svg"));

const inputs = [
  ...filesBelow(join(web, "src")),
  join(web, "build.mjs"),
  join(web, "package-lock.json"),
  join(web, "tsconfig.json"),
  ...filesBelow(join(root, "generated/typescript/src")),
];
const lines = [
  "# web/dist is built from the inputs below by `node web/build.mjs`; do not edit it by hand.",
  "# Checked by the Rust test repo::console (inputs and outputs) and by scripts/console.sh (a rebuild).",
];
for (const path of inputs) lines.push(`input ${sha256(readFileSync(path))} ${slash(relative(root, path))}`);
for (const path of filesBelow(out)) lines.push(`output ${sha256(readFileSync(path))} ${slash(relative(out, path))}`);
writeFileSync(join(out, "BUILD-SOURCES.txt"), lines.join("\n") + "\n");
