# Shared set-up for the project's scripts: build tools, the Python venv and
# the cargo target folder. Source it; it defines functions and exports paths.

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export SEPSIS_REPO="$repo_root"

# Cache folders live outside the clone when /var/tmp exists, so repeated runs
# on one machine are fast; nothing depends on them being there.
if [ -d /var/tmp ] && [ -w /var/tmp ]; then
  cache_root=/var/tmp
else
  cache_root="$repo_root/target"
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache_root/sepsis-ews-target}"
export SEPSIS_VENV="${SEPSIS_VENV:-$cache_root/sepsis-ews-venv}"

log() { printf '==> %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

# The venv contains cmake (LightGBM needs CMake >= 3.28, newer than Debian 12's)
# and the Python packages the tests use.
ensure_venv() {
  if [ ! -x "$SEPSIS_VENV/bin/python" ]; then
    log "creating Python venv $SEPSIS_VENV"
    if ! python3 -m venv "$SEPSIS_VENV" 2>/dev/null; then
      apt_install python3-venv
      python3 -m venv "$SEPSIS_VENV"
    fi
  fi
  "$SEPSIS_VENV/bin/python" -m pip install -q --disable-pip-version-check \
    -r "$repo_root/scripts/requirements.txt"
  export PATH="$SEPSIS_VENV/bin:$PATH"
}

# Build prerequisites of the lightgbm3 crate: CMake >= 3.28, libclang, g++.
ensure_build_deps() {
  local missing=()
  command -v g++ >/dev/null || missing+=(g++)
  command -v curl >/dev/null || missing+=(curl)
  # libclang-cpp (the C++ interface, present on many machines) is not the
  # libclang that bindgen loads, so the patterns require a digit after '-'.
  if ! compgen -G "/usr/lib/llvm-*/lib/libclang.so*" >/dev/null \
     && ! compgen -G "/usr/lib/llvm-*/lib/libclang-[0-9]*.so*" >/dev/null \
     && ! compgen -G "/usr/lib/*/libclang.so*" >/dev/null \
     && ! compgen -G "/usr/lib/*/libclang-[0-9]*.so*" >/dev/null; then
    missing+=(libclang-dev)
  fi
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]} with apt"
    apt_install "${missing[@]}"
  fi
  ensure_venv
  if ! command -v cargo >/dev/null; then
    echo "cargo not found: install Rust from rustup first" >&2
    exit 1
  fi
}
