// Bundles app.jsx once per AI SDK generation with esbuild: `node build.mjs <outdir>` writes
// <outdir>/ai5.js and <outdir>/ai6.js and prints {"ai5": {"ai": <version>, "react": <version>}, …}.
// Each bundle maps "ai" and "@ai-sdk/react" (in the app and inside the SDK packages alike) to
// that generation's npm aliases in package.json, so it holds one copy of each.
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = path.dirname(fileURLToPath(import.meta.url));
const modules = path.join(here, "..", "node_modules");
const outdir = process.argv[2];
if (!outdir) throw new Error("usage: node build.mjs <outdir>");

export const GENERATIONS = { ai5: { ai: "ai5", react: "ai-react5" }, ai6: { ai: "ai6", react: "ai-react6" } };

function version(name) {
  return JSON.parse(readFileSync(path.join(modules, name, "package.json"), "utf8")).version;
}

const versions = {};
for (const [name, packages] of Object.entries(GENERATIONS)) {
  await build({
    entryPoints: [path.join(here, "app.jsx")],
    outfile: path.join(outdir, `${name}.js`),
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    jsx: "automatic",
    alias: { ai: packages.ai, "@ai-sdk/react": packages.react },
    nodePaths: [modules],
    define: { "process.env.NODE_ENV": '"production"' },
    logLevel: "error",
  });
  versions[name] = { ai: version(packages.ai), react: version(packages.react) };
}
process.stdout.write(JSON.stringify(versions));
