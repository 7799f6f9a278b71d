#!/usr/bin/env bash
# Builds the images the test cluster runs, as linux/amd64 docker-archive tarballs in DIR,
# with hack/image (no Docker, nothing pulled):
#
#   postwarden.local/pause:test          the pod sandbox (test/cluster/images/pause)
#   postwarden.local/sink:test           the mail destination (test/cluster/images/sink)
#   postwarden.local/cert-manager:v...   cert-manager's controllers (hack/certmanager)
#   $IMAGE                               postwarden itself, as `make image` builds it
#
# Usage: hack/cluster-images.sh DIR IMAGE     prints the tarballs, one a line
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
[[ $# -eq 2 ]] || { echo "usage: $0 DIR IMAGE" >&2; exit 2; }
out=$(mkdir -p "$1" && cd "$1" && pwd)
image=$2
cd "$repo"
export CGO_ENABLED=0 GOOS=linux GOARCH=amd64
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
version=${image##*:}
cm_version=$(go list -m -f '{{.Version}}' github.com/cert-manager/cert-manager)

build_image() { # name tag binary [hack/image flags...]
  local name=$1 tag=$2 binary=$3
  shift 3
  go run ./hack/image -binary "linux/amd64=$binary" -tag "$tag" -title "$name" -description "$name for postwarden's test cluster" \
    -tar "$out/$name.tar" "$@" >/dev/null
  echo "$out/$name.tar"
}

mkdir -p "$out/bin"
go build -trimpath -o "$out/bin/pause" ./test/cluster/images/pause
build_image pause postwarden.local/pause:test "$out/bin/pause" -ca-bundle ""
go build -trimpath -o "$out/bin/sink" ./test/cluster/images/sink
build_image sink postwarden.local/sink:test "$out/bin/sink" -ca-bundle ""
(cd hack/certmanager && go build -trimpath -ldflags "-s -w" -o "$out/bin/cert-manager" .)
build_image cert-manager "postwarden.local/cert-manager:$cm_version" "$out/bin/cert-manager" -version "$cm_version"
go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$out/bin/postwarden" .
build_image postwarden "$image" "$out/bin/postwarden" -version "$version" -revision "$(git rev-parse HEAD)"
