#!/usr/bin/env bash
# The image test (`make image-test`): builds manifests/Dockerfile where no
# container registry is reachable, on base images made from Debian's own
# packages, and runs the demo inside the image the way a restricted pod
# runs it. Steps, each timed:
#
#   1. bases: debootstrap (minbase) a build base (gcc, make, the OpenBLAS
#      and LAPACKE -dev packages, this machine's Go toolchain and CA bundle
#      copied in: the module proxy may be reached through a TLS proxy
#      whose CA only this machine trusts) and
#      a runtime base (the runtime libraries, tini), `docker import` each;
#      cached in IMAGE_CI_CACHE across runs (a warm run skips this step);
#   2. build: the legacy builder (DOCKER_BUILDKIT=0, which reads only the
#      root .dockerignore) with GO_IMAGE and BASE_IMAGE pointing at those
#      bases; the build context it sends must stay under 16 MB;
#   3. run: `strata version` (the version stamp of `make build`, the
#      OpenBLAS backend) and `strata pilot --demo` with a read-only root,
#      user 65532, every capability dropped, no new privileges, no network
#      and a tmpfs at /tmp: it must exit 0 (GO) with report.html written.
#
# Needs root, debootstrap, Debian's docker.io (a dockerd is started when
# none answers, and stopped after) and the Debian mirror and Go module
# proxy (the builds use the host's network).
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${IMAGE_CI_CACHE:-/var/tmp/strata-image}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
COMMIT=${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
GOROOT_HOST=$(go env GOROOT)
GOVERSION=$(go env GOVERSION)
IMAGE=strata-ci/strata:$VERSION

fail() { echo "image-test: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (debootstrap)"
command -v debootstrap >/dev/null || fail "debootstrap not found: apt-get install debootstrap"
command -v docker >/dev/null || fail "docker not found: apt-get install docker.io"
mkdir -p "$CACHE"

t0=$(date +%s)
lap() { local now; now=$(date +%s); echo "image-test: $1: $((now - t0)) s"; t0=$now; }

if ! docker info >/dev/null 2>&1; then
  command -v dockerd >/dev/null || fail "dockerd not found: apt-get install docker.io"
  dockerd >"$CACHE/dockerd.log" 2>&1 &
  dockerd_pid=$!
  trap 'kill "$dockerd_pid"; wait "$dockerd_pid" 2>/dev/null || true' EXIT
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || fail "dockerd did not start: $CACHE/dockerd.log"
fi

# base NAME TAG PACKAGES [GOROOT]: debootstrap NAME once, import it as
# strata-ci/NAME:TAG unless that image exists.
base() {
  local name=$1 tag=$2 packages=$3 goroot=${4:-}
  local image=strata-ci/$name:$tag dir=$CACHE/$name-$SUITE
  docker image inspect "$image" >/dev/null 2>&1 && return
  if [ ! -e "$dir.done" ]; then
    rm -rf "$dir"
    debootstrap --variant=minbase --include="$packages" "$SUITE" "$dir" "$MIRROR" >"$dir.log" 2>&1 ||
      fail "debootstrap $name: $dir.log"
    touch "$dir.done"
  fi
  local change=()
  if [ -n "$goroot" ]; then
    rm -rf "$dir/usr/local/go"
    cp -a "$goroot" "$dir/usr/local/go"
    cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"
    change=(--change "ENV PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
  fi
  tar -C "$dir" -c . | docker import "${change[@]}" - "$image" >/dev/null
}
base go-build "$SUITE-$GOVERSION" gcc,libc6-dev,make,pkg-config,libopenblas-dev,liblapacke-dev,ca-certificates "$GOROOT_HOST"
base runtime "$SUITE" libopenblas0,liblapacke,tini,ca-certificates
lap "bases (debootstrap + docker import, cached in $CACHE)"

DOCKER_BUILDKIT=0 docker build --network host -f manifests/Dockerfile \
  --build-arg GO_IMAGE="strata-ci/go-build:$SUITE-$GOVERSION" \
  --build-arg BASE_IMAGE="strata-ci/runtime:$SUITE" \
  --build-arg VERSION="$VERSION" --build-arg COMMIT="$COMMIT" \
  -t "$IMAGE" . >"$CACHE/build.log" 2>&1 || { tail -30 "$CACHE/build.log"; fail "docker build: $CACHE/build.log"; }
context=$(sed -n 's/^Sending build context to Docker daemon *//p' "$CACHE/build.log" | tail -1)
echo "image-test: build context $context"
bytes=$(echo "$context" | awk '{v = $1 + 0} /kB$/ {v *= 1e3} /MB$/ {v *= 1e6} /GB$/ {v *= 1e9} {printf "%d", v}')
[ -n "$bytes" ] && [ "$bytes" -lt 16000000 ] || fail "build context $context: .dockerignore lets too much in"
lap "build"

restricted=(--rm --read-only --user 65532:65532 --cap-drop ALL --security-opt no-new-privileges
  --network none --tmpfs /tmp:rw,size=512m)
version=$(docker run "${restricted[@]}" "$IMAGE" version)
echo "image-test: $version"
case $version in
  "strata $VERSION (commit $COMMIT, "*", openblas backend)") ;;
  *) fail "version $version: want strata $VERSION (commit $COMMIT, ..., openblas backend)" ;;
esac
out=$(docker run "${restricted[@]}" --entrypoint /bin/sh "$IMAGE" -c \
  'strata pilot --demo --workdir /tmp/demo >/tmp/out 2>&1; code=$?; cat /tmp/out; test -s /tmp/demo/report/report.html || exit 9; exit $code') ||
  { echo "$out" | tail -20; fail "pilot --demo in the image exited non-zero"; }
echo "$out" | grep -E '^(Decision|GO|NO-GO|INCONCLUSIVE)|decision' | head -3 || true
lap "run (read-only, non-root, no capabilities, no network)"
docker image inspect --format 'image-test: {{.Config.User}} {{json .Config.Entrypoint}} {{.Size}} bytes' "$IMAGE"
echo "image-test: ok"
