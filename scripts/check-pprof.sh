#!/usr/bin/env bash
# Decodes pprof files (gzip-compressed profile.proto) with an independent decoder,
# the npm package pprof-format (pure JS, installed by scripts/setup-test-env.sh), and
# prints one JSON line per file:
#   {"file":..., "total_samples":N, "samples":N, "functions":N, "locations":N,
#    "period":N, "sample_types":["samples/count"], "stacks":{"root;...;leaf":N}}
# "stacks" (each sample read back root first, its first value; samples with the same
# frames summed) only with --stacks.
#
# It also checks what Pyroscope and `go tool pprof` rely on: string_table[0] is "",
# ids are non-zero, every location and function a sample names exists, and each
# sample has one value per sample type. A file that fails a check is reported on
# stderr and makes the exit status 1.
#
# Usage: scripts/check-pprof.sh [--stacks] FILE...
# Environment: PROFPIPE_TOOLS  tools dir [~/.cache/profpipe-tools]
# Exit status: 0 all files good, 1 a file is not a valid profile, 2 node or
# pprof-format missing.
set -euo pipefail

tools=${PROFPIPE_TOOLS:-$HOME/.cache/profpipe-tools}
modules="$tools/node/node_modules"
die() { echo "check-pprof: $*" >&2; exit 2; }
command -v node >/dev/null || die "node is not installed (run: bash scripts/setup-test-env.sh)"
[ -d "$modules/pprof-format" ] || die "$modules/pprof-format not found (run: bash scripts/setup-test-env.sh, which installs pprof-format 2.3.2)"
[ $# -gt 0 ] || die "usage: scripts/check-pprof.sh [--stacks] FILE..."

NODE_PATH="$modules" exec node - "$@" <<'JS'
const fs = require('fs');
const zlib = require('zlib');
const { Profile } = require('pprof-format');

let args = process.argv.slice(2);
const withStacks = args[0] === '--stacks';
if (withStacks) args = args.slice(1);
let bad = 0;
for (const file of args) {
  const problems = [];
  let out;
  try {
    const p = Profile.decode(zlib.gunzipSync(fs.readFileSync(file)));
    const strings = p.stringTable.strings;
    const str = (i) => {
      const s = strings[Number(i)];
      if (s === undefined) problems.push(`string index ${i} out of range`);
      return s;
    };
    if (strings[0] !== '') problems.push('string_table[0] is not ""');
    const functions = new Map();
    for (const f of p.function) {
      if (Number(f.id) === 0) problems.push('function id 0');
      functions.set(Number(f.id), str(f.name));
    }
    const locations = new Map();
    for (const l of p.location) {
      if (Number(l.id) === 0) problems.push('location id 0');
      const names = l.line.map((ln) => {
        const n = functions.get(Number(ln.functionId));
        if (n === undefined) problems.push(`location ${l.id} names unknown function ${ln.functionId}`);
        return n;
      });
      locations.set(Number(l.id), names);
    }
    const stacks = {};
    let total = 0;
    for (const s of p.sample) {
      if (s.value.length !== p.sampleType.length) problems.push('sample value count differs from sample_type');
      const v = Number(s.value[0]);
      total += v;
      if (withStacks) {
        const frames = [];
        for (const id of [...s.locationId].reverse()) {
          const names = locations.get(Number(id));
          if (names === undefined) { problems.push(`sample names unknown location ${id}`); continue; }
          // A location's lines are innermost first; root first here.
          frames.push(...[...names].reverse());
        }
        const key = frames.join(';');
        stacks[key] = (stacks[key] || 0) + v;
      }
    }
    out = {
      file,
      total_samples: total,
      samples: p.sample.length,
      functions: p.function.length,
      locations: p.location.length,
      period: Number(p.period),
      sample_types: p.sampleType.map((t) => `${str(t.type)}/${str(t.unit)}`),
    };
    if (withStacks) out.stacks = stacks;
  } catch (e) {
    problems.push(`cannot decode: ${e.message}`);
  }
  if (problems.length > 0) {
    bad++;
    console.error(`check-pprof: ${file}: ${[...new Set(problems)].join('; ')}`);
  } else {
    console.log(JSON.stringify(out));
  }
}
process.exit(bad > 0 ? 1 : 0);
JS
