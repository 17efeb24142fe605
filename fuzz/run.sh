#!/usr/bin/env bash
# Run every fuzz target for SECONDS each (default 20) and fail if any of
# them finds a crash. Installs cargo-fuzz if it is missing. Crash inputs
# land in fuzz/artifacts/TARGET/; see docs/fuzzing.md.
#
#   fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-20}"

# cargo-fuzz passes nightly-only flags (-Zsanitizer=address, ...) to rustc;
# this lets the stable toolchain accept them.
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

targets=(frame_decoder messages manifest dns_host_query dns_stub_answer http_scan)

# Seed the manifest corpus with the example manifests.
mkdir -p corpus/manifest
cp ../examples/*.toml corpus/manifest/

cargo fuzz build

failed=()
for t in "${targets[@]}"; do
  printf '\n==> fuzz %s for %ss\n' "$t" "$secs"
  args=(-max_total_time="$secs" -print_final_stats=1)
  if [[ -f "dict/$t.dict" ]]; then
    args+=(-dict="dict/$t.dict")
  fi
  if ! cargo fuzz run "$t" -- "${args[@]}"; then
    failed+=("$t")
  fi
done

if ((${#failed[@]})); then
  echo "fuzz: crashes in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz: no crashes in ${targets[*]} (${secs}s each)"
