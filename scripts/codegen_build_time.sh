#!/usr/bin/env bash
# Clean build time of the `cqc` proto crate built with bus-build, beside the same .proto set built
# with plain prost-build + protox, on the same machine in the same run.
#
#   bash scripts/codegen_build_time.sh [runs]      (default 2 runs of each, alternating)
#
# Each build is `cargo build` of a copy of the crate in its own temporary workspace with its own
# empty target dir, so every dependency is compiled too. Three crates:
#   bus-build   proto/ as it is: build.rs runs bus-build (protox -> prost-build -> bus code)
#   plain+bus   the same .proto files, build.rs runs protox + prost-build only, and the crate
#               depends on `bus` too: the same dependency graph, so the difference is the code
#               generation alone (bus-build itself, its extra code, compiling the generated impls)
#   plain       the same without the `bus` dependency: what a bare prost crate costs (for scale)
# Prints seconds per clean build and per rebuild of the crate alone (its dependencies built: build
# script compile + run + lib, the median of 3), the medians per variant, and the ratios
# bus-build / plain+bus. On a shared machine the clean-build figure swings by tens of percent
# between runs; the crate-alone figure isolates what code generation adds.
set -euo pipefail

runs="${1:-2}"
root="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

protos='"proto/cqc/assets/v1/assets.proto", "proto/cqc/markets/v1/markets.proto", "proto/cqc/portfolio/v1/portfolio.proto", "proto/cqc/venues/v1/venues.proto", "proto/cqc/events/v1/events.proto"'

make_crate() { # name, deps, build-deps, build.rs, lib.rs
  local dir="$tmp/$1"
  mkdir -p "$dir/src"
  cp -r "$root/proto/proto" "$dir/proto"
  cp "$root/Cargo.lock" "$dir/Cargo.lock"
  cat > "$dir/Cargo.toml" <<TOML
[package]
name = "cqc"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
$2

[build-dependencies]
$3

[workspace]
TOML
  printf '%s\n' "$4" > "$dir/build.rs"
  printf '%s\n' "$5" > "$dir/src/lib.rs"
}

prost_deps='prost = "0.14"
prost-types = "0.14"'
bus_dep="bus = { path = \"$root/bus\" }"

make_crate bus-build "$bus_dep
$prost_deps" "bus-build = { path = \"$root/bus-build\" }" \
  "$(cat "$root/proto/build.rs")" "$(cat "$root/proto/src/lib.rs")"

plain_build="fn main() -> std::io::Result<()> {
    let fds = protox::compile([$protos], [\"proto\"]).map_err(std::io::Error::other)?;
    prost_build::Config::new().compile_fds(fds)
}"
plain_lib='pub mod events { pub mod v1 { include!(concat!(env!("OUT_DIR"), "/cqc.events.v1.rs")); } }
pub mod assets { pub mod v1 { include!(concat!(env!("OUT_DIR"), "/cqc.assets.v1.rs")); } }
pub mod markets { pub mod v1 { include!(concat!(env!("OUT_DIR"), "/cqc.markets.v1.rs")); } }
pub mod portfolio { pub mod v1 { include!(concat!(env!("OUT_DIR"), "/cqc.portfolio.v1.rs")); } }
pub mod venues { pub mod v1 { include!(concat!(env!("OUT_DIR"), "/cqc.venues.v1.rs")); } }'
plain_build_deps='prost-build = "0.14"
protox = "0.10"'
make_crate plain+bus "$bus_dep
$prost_deps" "$plain_build_deps" "$plain_build" "$plain_lib"
make_crate plain "$prost_deps" "$plain_build_deps" "$plain_build" "$plain_lib"

# Resolve (and fetch, if needed) outside the timed builds.
for v in bus-build plain+bus plain; do
  (cd "$tmp/$v" && cargo fetch -q)
done

declare -A times crate
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
build() { # variant, run
  local dir="$tmp/$1" target="$tmp/target-$1-$2"
  local start end
  start=$(date +%s.%N)
  (cd "$dir" && CARGO_TARGET_DIR="$target" cargo build -q --offline)
  end=$(date +%s.%N)
  local secs
  secs=$(echo "$end - $start" | bc)
  times[$1]="${times[$1]:-} $secs"
  # The crate alone, dependencies already built: build script compile + run + the lib, 3 times.
  local own=""
  for _ in 1 2 3; do
    (cd "$dir" && CARGO_TARGET_DIR="$target" cargo clean -q -p cqc)
    start=$(date +%s.%N)
    (cd "$dir" && CARGO_TARGET_DIR="$target" cargo build -q --offline)
    end=$(date +%s.%N)
    own="$own $(echo "$end - $start" | bc)"
  done
  own=$(echo "$own" | median)
  crate[$1]="${crate[$1]:-} $own"
  printf '%-10s run %d: clean build %7.1f s, crate alone %6.1f s\n' "$1" "$2" "$secs" "$own"
  rm -rf "$target"
}

echo "clean dev builds on $(nproc) cores, $(date -u +%FT%TZ), $runs run(s) each"
for run in $(seq 1 "$runs"); do
  for v in bus-build plain+bus plain; do
    build "$v" "$run"
  done
done

bb=$(echo "${times[bus-build]}" | median)
pb=$(echo "${times[plain+bus]}" | median)
p=$(echo "${times[plain]}" | median)
printf 'median: bus-build %.1f s, plain+bus %.1f s, plain %.1f s\n' "$bb" "$pb" "$p"
printf 'ratio bus-build / plain+bus (clean build): %.3f (target <= 1.15)\n' "$(echo "$bb / $pb" | bc -l)"
cb=$(echo "${crate[bus-build]}" | median)
cpb=$(echo "${crate[plain+bus]}" | median)
cp=$(echo "${crate[plain]}" | median)
printf 'crate alone, median: bus-build %.1f s, plain+bus %.1f s, plain %.1f s\n' "$cb" "$cpb" "$cp"
printf 'ratio bus-build / plain+bus (crate alone): %.3f\n' "$(echo "$cb / $cpb" | bc -l)"
