// Turns tsc's ES modules (build/esm/*.js, build/types/*.d.ts) into what the package
// ships and the gateway's demo serves:
//
//   dist/switchyard.js    one ES module, no imports (each source module becomes a
//                         function scope; imports become reads of its exports)
//   dist/switchyard.d.ts  the types, re-exported from dist/types/
//   dist/types/*.d.ts     tsc's declarations
//
// `node scripts/bundle.mjs` writes dist/. `node scripts/bundle.mjs --check` builds the
// same in memory and fails when the committed dist/ differs, so it cannot go stale.
//
// It knows only the shapes tsc writes for this source (one-line `import { .. } from
// "./x.js"`, `export` before a declaration, `export { .. } from "./x.js"`) and refuses
// anything else rather than guess.

import { readFileSync, readdirSync, writeFileSync, mkdirSync, existsSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const esmDir = join(root, "build", "esm");
const typesDir = join(root, "build", "types");
const distDir = join(root, "dist");
const ENTRY = "index";

const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));

function fail(message) {
  console.error(`bundle: ${message}`);
  process.exit(1);
}

/** `a, b as c,` → [["a", "a"], ["b", "c"]] (exported name, local name). */
function names(list) {
  return list
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "")
    .map((s) => {
      const m = /^([A-Za-z_$][\w$]*)(?:\s+as\s+([A-Za-z_$][\w$]*))?$/.exec(s);
      if (!m) fail(`cannot read the name list entry ${JSON.stringify(s)}`);
      return [m[1], m[2] ?? m[1]];
    });
}

function readModule(name) {
  const path = join(esmDir, `${name}.js`);
  if (!existsSync(path)) fail(`${path} is missing: run tsc first`);
  const deps = new Set();
  const body = [];
  // [exported name, expression]
  const exports = [];
  const lines = readFileSync(path, "utf8").split("\n");
  for (const line of lines) {
    let m;
    if ((m = /^import \{([^}]*)\} from "\.\/([\w-]+)\.js";$/.exec(line))) {
      deps.add(m[2]);
      const bindings = names(m[1]).map(([from, local]) => (from === local ? from : `${from}: ${local}`));
      body.push(`const { ${bindings.join(", ")} } = ${moduleVar(m[2])};`);
    } else if (/^import\b/.test(line)) {
      fail(`${name}.js: unsupported import: ${line}`);
    } else if ((m = /^export \{([^}]*)\} from "\.\/([\w-]+)\.js";$/.exec(line))) {
      deps.add(m[2]);
      for (const [from, as] of names(m[1])) exports.push([as, `${moduleVar(m[2])}.${from}`]);
    } else if ((m = /^export \{([^}]*)\};$/.exec(line))) {
      for (const [local, as] of names(m[1])) exports.push([as, local]);
    } else if ((m = /^export ((?:async )?function\*? |class |const |let |var )([A-Za-z_$][\w$]*)/.exec(line))) {
      if (m[1] === "let " || m[1] === "var ") fail(`${name}.js: mutable export ${m[2]} would lose its live binding`);
      exports.push([m[2], m[2]]);
      body.push(line.slice("export ".length));
    } else if (/^export\b/.test(line)) {
      fail(`${name}.js: unsupported export: ${line}`);
    } else if (/^\/\/# sourceMappingURL=/.test(line)) {
      // dropped
    } else {
      body.push(line);
    }
  }
  return { name, deps: [...deps], body, exports };
}

function moduleVar(name) {
  return `__${name.replace(/-/g, "_")}`;
}

/** Modules in dependency order, entry last; refuses cycles. */
function ordered(entry) {
  const done = new Map();
  const visiting = new Set();
  const order = [];
  const visit = (name, chain) => {
    if (done.has(name)) return;
    if (visiting.has(name)) fail(`import cycle: ${[...chain, name].join(" → ")}`);
    visiting.add(name);
    const mod = readModule(name);
    for (const dep of mod.deps) visit(dep, [...chain, name]);
    visiting.delete(name);
    done.set(name, mod);
    order.push(mod);
  };
  visit(entry, []);
  return order;
}

function bundle() {
  const modules = ordered(ENTRY);
  const out = [
    `// ${pkg.name} ${pkg.version}: one ES module built from client/js/src by scripts/bundle.mjs.`,
    "// Generated: edit src/ and run `npm run build`.",
    "",
  ];
  for (const mod of modules) {
    const fields = mod.exports.map(([as, expr]) => (as === expr ? as : `${as}: ${expr}`));
    out.push(`// --- ${mod.name}.ts`);
    out.push(`const ${moduleVar(mod.name)} = (() => {`);
    out.push(...trimBlank(mod.body));
    out.push(`return { ${fields.join(", ")} };`);
    out.push("})();");
    out.push("");
  }
  const entry = modules[modules.length - 1];
  const publicNames = entry.exports.map(([as]) => as);
  out.push(`export const { ${publicNames.join(", ")} } = ${moduleVar(ENTRY)};`);
  out.push("");
  return out.join("\n");
}

function trimBlank(lines) {
  let start = 0;
  let end = lines.length;
  while (start < end && lines[start].trim() === "") start++;
  while (end > start && lines[end - 1].trim() === "") end--;
  return lines.slice(start, end);
}

/** Every file of dist/, by path relative to it. */
function build() {
  const files = new Map();
  files.set("switchyard.js", bundle());
  files.set("switchyard.d.ts", `// Types of switchyard.js (tsc's declarations of src/).\nexport * from "./types/index.js";\n`);
  if (!existsSync(typesDir)) fail(`${typesDir} is missing: run tsc first`);
  for (const file of readdirSync(typesDir).sort()) {
    if (file.endsWith(".d.ts")) files.set(`types/${file}`, readFileSync(join(typesDir, file), "utf8"));
  }
  return files;
}

function committed() {
  const files = new Map();
  const walk = (dir, prefix) => {
    if (!existsSync(dir)) return;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const rel = prefix + entry.name;
      if (entry.isDirectory()) walk(join(dir, entry.name), `${rel}/`);
      else files.set(rel, readFileSync(join(dir, entry.name), "utf8"));
    }
  };
  walk(distDir, "");
  return files;
}

const files = build();
if (process.argv.includes("--check")) {
  const have = committed();
  const problems = [];
  for (const [path, text] of files) {
    if (!have.has(path)) problems.push(`dist/${path} is missing`);
    else if (have.get(path) !== text) problems.push(`dist/${path} differs from a fresh build`);
  }
  for (const path of have.keys()) if (!files.has(path)) problems.push(`dist/${path} is not built any more`);
  if (problems.length > 0) {
    for (const p of problems) console.error(`bundle --check: ${p}`);
    fail("the committed dist/ is stale: run `npm run build` in client/js and commit dist/");
  }
  console.log(`bundle --check: dist/ matches a fresh build (${files.size} files)`);
} else {
  rmSync(distDir, { recursive: true, force: true });
  for (const [path, text] of files) {
    mkdirSync(dirname(join(distDir, path)), { recursive: true });
    writeFileSync(join(distDir, path), text);
  }
  console.log(`bundle: wrote ${files.size} files to dist/`);
}
