#!/usr/bin/env bash
# Container entrypoint of iohwatch.
#
#   entrypoint.sh [IOHWATCH-ARGS...]    prepare engines if asked, then exec `iohwatch ARGS` (default: run)
#   entrypoint.sh prepare-engines       prepare engines and exit (Kubernetes init container)
#
# A TensorRT plan only runs on the GPU model and TensorRT version it was built with, so plans are
# built on the target machine, never in the image. When IOHWATCH_ENGINE_CACHE names a directory
# (a volume) and a GPU is visible, the source engine (IOHWATCH_ENGINE_PATH, else the engine shipped
# in the package) is copied into the cache under a key made from the visible GPU (name, compute
# capability, driver), the TensorRT version, the iohwatch version and the source manifest; its
# plans are built there with `iohwatch engine build`, checked with `iohwatch engine info`, and the
# directory is moved into place atomically. A later start with the same key reuses it; any other
# GPU or version gets its own entry. IOHWATCH_ENGINE_PATH then points at the cached engine.
# Without a visible GPU nothing device-specific is built (ONNX Runtime on CPU loads the portable
# ONNX engine as it is). Every failure stops the container with a message saying what to do.
set -euo pipefail

log() { printf 'iohwatch-entrypoint: %s\n' "$*" >&2; }
die() { log "error: $*"; exit "${2:-1}"; }

IOHWATCH_BIN="${IOHWATCH_BIN:-iohwatch}"

require_subcommand() {
  # require_subcommand NAME... : the iohwatch subcommand must exist in this build.
  if ! "$IOHWATCH_BIN" "$@" --help >/dev/null 2>&1; then
    die "'iohwatch $*' is not available in this image, so engines cannot be built for this GPU.
  Unset IOHWATCH_ENGINE_CACHE to start without building (the agent then loads IOHWATCH_ENGINE_PATH
  as it is, or serves the baseline), or use an image whose iohwatch has 'iohwatch $*'." 78
  fi
}

gpu_identity() {
  # One line naming the first visible GPU, or nothing when none is visible.
  command -v nvidia-smi >/dev/null 2>&1 || return 0
  nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader 2>/dev/null \
    | head -n 1 | tr -s ' ' || true
}

tensorrt_version() {
  python3 - <<'PY' 2>/dev/null || echo none
try:
    import tensorrt
    print(tensorrt.__version__)
except Exception:
    print("none")
PY
}

source_engine() {
  # The engine directory to build from: IOHWATCH_ENGINE_PATH, else the package's shipped default.
  if [[ -n "${IOHWATCH_ENGINE_PATH:-}" ]]; then
    echo "$IOHWATCH_ENGINE_PATH"
  else
    python3 -c 'import pathlib, models; print(pathlib.Path(models.__file__).parent / "default")' 2>/dev/null || true
  fi
}

prepare_engines() {
  local cache="${IOHWATCH_ENGINE_CACHE:-}"
  if [[ -z "$cache" ]]; then
    return 0
  fi
  if [[ "${IOHWATCH_ENGINE_PATH:-}" == "none" ]]; then
    log "IOHWATCH_ENGINE_PATH=none: the baseline forecaster runs; no engine to build"
    return 0
  fi
  [[ -d "$cache" ]] || die "IOHWATCH_ENGINE_CACHE=$cache is not a directory; mount a volume there or unset it"
  [[ -w "$cache" ]] || die "IOHWATCH_ENGINE_CACHE=$cache is not writable by uid $(id -u); fix the volume's permissions (fsGroup)"

  local gpu
  gpu="$(gpu_identity)"
  if [[ -z "$gpu" ]]; then
    log "no GPU visible (nvidia-smi absent or found none); nothing device-specific to build"
    return 0
  fi

  local src
  src="$(source_engine)"
  if [[ ! -f "$src/manifest.json" ]]; then
    if [[ -n "${IOHWATCH_ENGINE_PATH:-}" ]]; then
      die "IOHWATCH_ENGINE_PATH=$src has no manifest.json; point it at a directory written by 'iohwatch export'"
    fi
    log "no engine shipped in this image ($src has no manifest.json); nothing to build, the agent serves the baseline"
    return 0
  fi
  require_subcommand engine build
  require_subcommand engine info

  local trt version src_hash target_line key dir
  trt="$(tensorrt_version)"
  version="$("$IOHWATCH_BIN" --version 2>/dev/null | awk '{print $NF}')"
  src_hash="$(sha256sum "$src/manifest.json" | cut -c1-16)"
  target_line="gpu=${gpu}; tensorrt=${trt}; iohwatch=${version}; source=${src_hash}"
  key="$(printf '%s' "$target_line" | sha256sum | cut -c1-16)"
  dir="$cache/$key"

  if [[ -f "$dir/target.txt" ]] && [[ "$(cat "$dir/target.txt")" == "$target_line" ]] \
     && "$IOHWATCH_BIN" engine info "$dir" >/dev/null 2>&1; then
    log "engine cache hit: $dir ($target_line)"
  else
    if [[ -e "$dir" ]]; then
      log "cached engine at $dir does not match this GPU or fails 'iohwatch engine info'; rebuilding"
    fi
    log "building engines from $src for $target_line"
    local tmp="$cache/.build-$key-$$"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    cp -R "$src/." "$tmp/"
    if ! "$IOHWATCH_BIN" engine build "$tmp"; then
      rm -rf "$tmp"
      die "'iohwatch engine build $tmp' failed; see the lines above"
    fi
    if ! "$IOHWATCH_BIN" engine info "$tmp" >/dev/null; then
      rm -rf "$tmp"
      die "the engine just built from $src does not pass 'iohwatch engine info'"
    fi
    printf '%s' "$target_line" > "$tmp/target.txt"
    rm -rf "$dir"
    mv "$tmp" "$dir"
    log "engines ready at $dir"
  fi
  export IOHWATCH_ENGINE_PATH="$dir"
}

if [[ "${1:-}" == "prepare-engines" ]]; then
  prepare_engines
  exit 0
fi

prepare_engines
if [[ $# -eq 0 ]]; then
  set -- run
fi
exec "$IOHWATCH_BIN" "$@"
