// Runs the protocol core tests (tests/host/core/test_*.py) on MicroPython's WebAssembly port.
//
//   node tests/mpy/run_core.mjs                         all core test modules
//   node tests/mpy/run_core.mjs test_digest             one module (".py" optional)
//   node tests/mpy/run_core.mjs test_digest.test_golden_frames     one test
//   node tests/mpy/run_core.mjs --extra tools/mepsim    also install that package (repeatable)
//   node tests/mpy/run_core.mjs --heap 8m               MicroPython heap (default 4m)
//   node tests/mpy/run_core.mjs --root DIR              another checkout (default: this one)
//
// Filesystem inside MicroPython (mirrors the repo so support.py finds ../data):
//   /lib/mep/...            firmware/mep/**/*.py
//   /lib/<name>[/...]       every --extra directory (as a package) or file
//   /tests/core/*.py        tests/host/core/*.py   (on sys.path)
//   /tests/data/*           tests/host/data/*
// Prints "PASS module.test" / "FAIL module.test" + traceback per test, then "N passed, N failed".
// Exit status 1 when anything failed or no test ran.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
let ROOT = path.resolve(HERE, "..", "..");
const PKG = "@micropython/micropython-webassembly-pyscript";

function usage(code) {
  console.log("usage: node tests/mpy/run_core.mjs [--extra DIR]... [--heap SIZE] [--root DIR] [module[.test]]...");
  process.exit(code);
}

function parseSize(s) {
  const m = /^(\d+)([kKmM]?)$/.exec(s);
  if (!m) throw new Error("bad size: " + s);
  const mult = { "": 1, k: 1024, m: 1024 * 1024 }[m[2].toLowerCase()];
  return parseInt(m[1], 10) * mult;
}

const extras = [];
const selectors = [];
let heapsize = 4 * 1024 * 1024;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === "--extra") {
    if (i + 1 >= argv.length) usage(2);
    extras.push(argv[++i]);
  } else if (a.startsWith("--extra=")) {
    extras.push(a.slice(8));
  } else if (a === "--root") {
    if (i + 1 >= argv.length) usage(2);
    ROOT = path.resolve(argv[++i]);
  } else if (a === "--heap") {
    if (i + 1 >= argv.length) usage(2);
    heapsize = parseSize(argv[++i]);
  } else if (a === "-h" || a === "--help") {
    usage(0);
  } else if (a.startsWith("-")) {
    console.error("unknown option " + a);
    usage(2);
  } else {
    selectors.push(a.replace(/\.py$/, "").replace(/^.*\//, ""));
  }
}

let loadMicroPython;
try {
  ({ loadMicroPython } = await import(PKG));
} catch (e) {
  console.error("cannot load " + PKG + " (run `npm ci` in tests/mpy): " + e.message);
  process.exit(2);
}

const mp = await loadMicroPython({
  heapsize,
  linebuffer: true,
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
});
const FS = mp.FS;

function mkdirs(p) {
  let cur = "";
  for (const part of p.split("/").filter(Boolean)) {
    cur += "/" + part;
    try {
      FS.mkdir(cur);
    } catch (e) {
      // EEXIST
    }
  }
}

// Copy a host directory tree into the MicroPython FS. filter(name) picks the files.
function copyTree(hostDir, mpDir, filter) {
  let n = 0;
  mkdirs(mpDir);
  for (const ent of fs.readdirSync(hostDir, { withFileTypes: true })) {
    if (ent.name === "__pycache__" || ent.name.startsWith(".")) continue;
    const src = path.join(hostDir, ent.name);
    if (ent.isDirectory()) {
      n += copyTree(src, mpDir + "/" + ent.name, filter);
    } else if (ent.isFile() && filter(ent.name)) {
      FS.writeFile(mpDir + "/" + ent.name, fs.readFileSync(src));
      n++;
    }
  }
  return n;
}

const isPy = (name) => name.endsWith(".py");
const anyFile = () => true;

const mepDir = path.join(ROOT, "firmware", "mep");
if (fs.existsSync(mepDir)) copyTree(mepDir, "/lib/mep", isPy);
else mkdirs("/lib");

for (const extra of extras) {
  let src = path.resolve(extra);
  if (!fs.existsSync(src)) src = path.resolve(ROOT, extra);
  if (!fs.existsSync(src)) {
    console.error("--extra " + extra + ": not found");
    process.exit(2);
  }
  const name = path.basename(src);
  if (fs.statSync(src).isDirectory()) copyTree(src, "/lib/" + name, isPy);
  else FS.writeFile("/lib/" + name, fs.readFileSync(src));
}

const coreDir = path.join(ROOT, "tests", "host", "core");
if (fs.existsSync(coreDir)) copyTree(coreDir, "/tests/core", isPy);
else mkdirs("/tests/core");
const dataDir = path.join(ROOT, "tests", "host", "data");
if (fs.existsSync(dataDir)) copyTree(dataDir, "/tests/data", anyFile);

// Test modules and their test functions in definition order (as pytest runs them); the
// Python side adds any test_* callables the scan missed (defined by assignment etc.).
const plan = [];
const modules = fs.existsSync(coreDir)
  ? fs.readdirSync(coreDir).filter((f) => /^test_.*\.py$/.test(f)).sort()
  : [];
for (const file of modules) {
  const mod = file.slice(0, -3);
  const wanted = selectors.length === 0
    ? null
    : selectors.filter((s) => s === mod || s.startsWith(mod + "."));
  if (wanted !== null && wanted.length === 0) continue;
  const only = wanted === null || wanted.includes(mod)
    ? null
    : wanted.map((s) => s.slice(mod.length + 1));
  const src = fs.readFileSync(path.join(coreDir, file), "utf8");
  const names = [];
  for (const m of src.matchAll(/^(?:async[ \t]+)?def[ \t]+(test_\w*)[ \t]*\(/gm)) {
    if (!names.includes(m[1])) names.push(m[1]);
  }
  plan.push([mod, names, only]);
}
for (const s of selectors) {
  if (!plan.some(([mod]) => s === mod || s.startsWith(mod + "."))) {
    console.error("no core test module matches " + s);
  }
}

const driver = `
import sys, io, json
sys.path.insert(0, '/tests/core')

def _tb(e):
    buf = io.StringIO()
    sys.print_exception(e, buf)
    return '    ' + buf.getvalue().rstrip().replace('\\n', '\\n    ')

_passed = 0
_failed = 0
for _mod, _names, _only in json.loads(_plan_json):
    try:
        _m = __import__(_mod)
    except BaseException as e:
        _failed += 1
        print('FAIL ' + _mod + ' (import)')
        print(_tb(e))
        continue
    _extra = sorted(n for n in dir(_m) if n.startswith('test_') and n not in _names)
    for _name in _names + _extra:
        if _only is not None and _name not in _only:
            continue
        _fn = getattr(_m, _name, None)
        if not callable(_fn):
            continue
        _current = _mod + '.' + _name
        try:
            _r = _fn()
            if hasattr(_r, 'send'):
                await _r
            _passed += 1
            print('PASS ' + _mod + '.' + _name)
        except BaseException as e:
            _failed += 1
            print('FAIL ' + _mod + '.' + _name)
            print(_tb(e))
print('%d passed, %d failed' % (_passed, _failed))
_result = '%d %d' % (_passed, _failed)
`;

// A test awaiting something that never happens leaves node with nothing to do: it exits
// (status 13) before the driver returns. Report that test as failed.
let finished = false;
process.on("exit", () => {
  if (finished) return;
  let cur = "?", p = 0, f = 0;
  try {
    cur = String(mp.globals.get("_current"));
    p = Number(mp.globals.get("_passed"));
    f = Number(mp.globals.get("_failed"));
  } catch (e) {
    // interpreter state unavailable
  }
  console.log("FAIL " + cur);
  console.log("    never finished: it awaits something that never happens (no timer or I/O pending)");
  console.log(p + " passed, " + (f + 1) + " failed");
  process.exitCode = 1;
});

let passed = 0;
let failed = 0;
try {
  mp.globals.set("_plan_json", JSON.stringify(plan));
  await mp.runPythonAsync(driver);
  [passed, failed] = String(mp.globals.get("_result")).split(" ").map(Number);
  finished = true;
} catch (e) {
  finished = true;
  console.error("runner crashed: " + (e.message || e));
  process.exit(1);
}
process.exit(failed > 0 || passed + failed === 0 ? 1 : 0);
