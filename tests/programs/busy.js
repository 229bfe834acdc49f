// A CPU-bound Node.js workload with distinctive function names, profiled by
// tests/jit_runtimes.rs. Runs for argv[2] seconds (argv[3] is a marker for the
// test's discovery). With PROFPIPE_READY_FILE set, creates that file once its hot
// functions have run for two seconds (long enough for V8 to optimise them).
"use strict";
const fs = require("fs");

function profpipeNodeLeaf(n) {
  let s = 0;
  for (let i = 0; i < n; i++) {
    s = (s + i * 31) ^ (s >>> 3);
  }
  return s;
}

function profpipeNodeMid(n) {
  let s = 0;
  for (let i = 0; i < 10; i++) {
    s += profpipeNodeLeaf(n);
  }
  return s;
}

const end = Date.now() + Number(process.argv[2]) * 1000;
const warm = Date.now() + 2000;
let ready = process.env.PROFPIPE_READY_FILE;
let sink = 0;
while (Date.now() < end) {
  sink += profpipeNodeMid(100000);
  if (ready && Date.now() > warm) {
    fs.writeFileSync(ready, "");
    ready = undefined;
  }
}
