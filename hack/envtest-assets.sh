#!/usr/bin/env bash
# Builds the control-plane binaries that envtest needs (kube-apiserver, etcd) and a
# matching kubectl from the Go module proxy, because envtest's usual download is not
# reachable offline. The binaries are cached: a second run only prints the folder.
#
# Usage: hack/envtest-assets.sh            prints the folder to use as KUBEBUILDER_ASSETS
# Env:   ENVTEST_BIN_DIR  cache root (default: <repo>/bin/envtest)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=hack/lib/kube-build.sh
source "$repo/hack/lib/kube-build.sh"
api_version=$(cd "$repo" && go list -m -f '{{.Version}}' k8s.io/api)   # e.g. v0.37.2
kube_version="v1.${api_version#v0.}"                                    # e.g. v1.37.2
out="${ENVTEST_BIN_DIR:-$repo/bin/envtest}/$kube_version"

if [[ -x "$out/kube-apiserver" && -x "$out/etcd" && -x "$out/kubectl" ]]; then
  echo "$out"
  exit 0
fi

mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

kube_mod=$(kube_module "$work" "$kube_version")
ldflags=$(kube_ldflags "$kube_version")
if [[ ! -x "$out/kube-apiserver" ]]; then kube_build "$out" kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$work" "$ldflags"; fi
if [[ ! -x "$out/kubectl" ]]; then kube_build "$out" kubectl k8s.io/kubernetes/cmd/kubectl "$work" "$ldflags"; fi

if [[ ! -x "$out/etcd" ]]; then
  # etcd at the version kubernetes itself requires, through its library entry point.
  etcd_version=$(sed -n 's#^\s*go.etcd.io/etcd/server/v3 \(v[^ ]*\).*#\1#p' "$kube_mod" | head -n 1)
  mkdir -p "$work/etcd"
  cat > "$work/etcd/go.mod" <<MOD
module postwarden.local/etcd-build

go 1.26

require go.etcd.io/etcd/server/v3 $etcd_version
MOD
  cat > "$work/etcd/main.go" <<'SRC'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
SRC
  kube_build "$out" etcd . "$work/etcd" ""
fi

echo "$out"
