#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine with only Rust: installs what the tests need
# when it is missing (`nats-server` for the JetStream tests, which start their own servers;
# `openssl` for the TLS test's certificates), then runs every test of the workspace.
# Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/sbin/nats-server ] || command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "--- installing ${missing[*]} (Debian packages)"
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}"
fi

# `bus` on its own first: the workspace's tests turn on its `otel` feature, so this is the run of
# its unit tests as a crate without `otel` builds it (the light trace-context pass-through).
cargo test -p bus --lib --locked "$@"
exec cargo test --workspace --locked "$@"
