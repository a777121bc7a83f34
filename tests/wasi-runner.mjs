// Runs a wasm32-wasip1 test binary (cargo's runner) under Node's built-in WASI, so the pure
// core's unit tests also run as wasm. proxy-wasm host imports are stubbed: pure tests never call them.
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
import process from 'node:process';

const [file, ...args] = process.argv.slice(2);
const wasi = new WASI({ version: 'preview1', args: [file, ...args], env: { RUST_BACKTRACE: '0' }, returnOnExit: true });
const module = await WebAssembly.compile(await readFile(file));
const imports = { wasi_snapshot_preview1: wasi.wasiImport };
for (const imp of WebAssembly.Module.imports(module)) {
  if (imp.module === 'wasi_snapshot_preview1') continue;
  imports[imp.module] ??= {};
  imports[imp.module][imp.name] = () => { throw new Error(`host function ${imp.module}.${imp.name} called in a unit test`); };
}
const instance = await WebAssembly.instantiate(module, imports);
process.exitCode = wasi.start(instance);
