#!/usr/bin/env bash
# Container entrypoint of iohwatch.
#
#   entrypoint.sh [IOHWATCH-ARGS...]    prepare engines if asked, then exec `iohwatch ARGS` (default: run)
#   entrypoint.sh prepare-engines       prepare engines and exit (Kubernetes init container)
#
# A TensorRT engine only runs on the GPU model and TensorRT version it was built with. When
# IOHWATCH_ENGINE_CACHE names a directory (a volume), engines are kept there under a key made from
# the visible GPU (name, compute capability, driver), the TensorRT version, the iohwatch version and
# the source engine's manifest (IOHWATCH_ENGINE_PATH when given, else the shipped default). If the key's directory is missing or does not pass
# `iohwatch engine info`, the engines are rebuilt with `iohwatch export` on this GPU, checked, and
# moved into place atomically; IOHWATCH_ENGINE_PATH then points at them for the agent.
# Without a visible GPU nothing device-specific is built (ONNX Runtime on CPU loads the portable
# ONNX engine directly). Every failure stops the container with a message saying what to do.
set -euo pipefail

log() { printf 'iohwatch-entrypoint: %s\n' "$*" >&2; }
die() { log "error: $*"; exit "${2:-1}"; }

IOHWATCH_BIN="${IOHWATCH_BIN:-iohwatch}"

require_subcommand() {
  # require_subcommand NAME... : the iohwatch subcommand must exist in this build.
  if ! "$IOHWATCH_BIN" "$@" --help >/dev/null 2>&1; then
    die "'iohwatch $*' is not available in this image, so engines cannot be built for this GPU.
  Unset IOHWATCH_ENGINE_CACHE to start without building engines (the agent then uses
  IOHWATCH_ENGINE_PATH as given, or the baseline), or use an image that ships the models." 78
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

source_identity() {
  # The engine the cache is built from: the manifest hash of IOHWATCH_ENGINE_PATH when given.
  local src="${IOHWATCH_ENGINE_PATH:-}"
  if [[ -z "$src" ]]; then echo "shipped-default"; return; fi
  [[ -f "$src/manifest.json" ]] || die "IOHWATCH_ENGINE_PATH=$src has no manifest.json"
  echo "$(sha256sum "$src/manifest.json" | cut -c1-16)"
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
    log "no GPU visible (nvidia-smi absent or found none); nothing device-specific to build, ONNX Runtime loads the portable engine"
    return 0
  fi
  require_subcommand export
  require_subcommand engine info

  local trt version src target_line key dir
  trt="$(tensorrt_version)"
  version="$("$IOHWATCH_BIN" --version 2>/dev/null | awk '{print $NF}')"
  src="$(source_identity)"
  target_line="gpu=${gpu}; tensorrt=${trt}; iohwatch=${version}; source=${src}"
  key="$(printf '%s' "$target_line" | sha256sum | cut -c1-16)"
  dir="$cache/$key"

  if [[ -f "$dir/target.txt" ]] && [[ "$(cat "$dir/target.txt")" == "$target_line" ]] \
     && "$IOHWATCH_BIN" engine info "$dir" >/dev/null 2>&1; then
    log "engine cache hit: $dir ($target_line)"
  else
    if [[ -e "$dir" ]]; then
      log "cached engine at $dir does not match this GPU or fails 'iohwatch engine info'; rebuilding"
    fi
    log "building engines for $target_line"
    local tmp="$cache/.build-$key-$$"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    local export_args=(--out "$tmp")
    if [[ -n "${IOHWATCH_ENGINE_PATH:-}" ]]; then export_args+=(--from "$IOHWATCH_ENGINE_PATH"); fi
    if ! "$IOHWATCH_BIN" export "${export_args[@]}"; then
      rm -rf "$tmp"
      die "'iohwatch export ${export_args[*]}' failed; see the lines above"
    fi
    if ! "$IOHWATCH_BIN" engine info "$tmp"; then
      rm -rf "$tmp"
      die "the engine just built in $tmp does not pass 'iohwatch engine info'"
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
