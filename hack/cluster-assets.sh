#!/usr/bin/env bash
# Builds the Kubernetes commands of the test cluster (test/cluster) from the Go module
# proxy, beside the envtest ones (kube-apiserver, etcd, kubectl from hack/envtest-assets.sh):
#
#   control plane, at the API server's version (go.mod's k8s.io/api):
#     kube-controller-manager, kube-scheduler
#   node, at NODE_KUBE_VERSION (default v1.34.4):
#     kubelet, kube-proxy
#
# Why the node is older: this machine kind has cgroup v1 and Debian's containerd 1.6.
# Kubelets from 1.35 on refuse cgroup v1 by default and are announced to require
# containerd 2; 1.34 runs on both, and three minor versions of kubelet skew below the API
# server are supported.
#
# Usage: hack/cluster-assets.sh     prints the folder that holds all seven commands
# Env:   CLUSTER_BIN_DIR  cache root (default: $HOME/.cache/postwarden/cluster)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=hack/lib/kube-build.sh
source "$repo/hack/lib/kube-build.sh"
api_version=$(cd "$repo" && go list -m -f '{{.Version}}' k8s.io/api)
kube_version="v1.${api_version#v0.}"
node_version="${NODE_KUBE_VERSION:-v1.34.4}"
out="${CLUSTER_BIN_DIR:-$HOME/.cache/postwarden/cluster}/$kube_version-node-$node_version"
envtest=$("$repo/hack/envtest-assets.sh")

want=(kube-apiserver etcd kubectl kube-controller-manager kube-scheduler kubelet kube-proxy)
done=1
for b in "${want[@]}"; do [[ -x "$out/$b" ]] || done=0; done
if [[ $done -eq 1 ]]; then
  echo "$out"
  exit 0
fi

mkdir -p "$out"
for b in kube-apiserver etcd kubectl; do ln -sf "$envtest/$b" "$out/$b"; done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [[ ! -x "$out/kube-controller-manager" || ! -x "$out/kube-scheduler" ]]; then
  kube_module "$work/control" "$kube_version" >/dev/null
  ldflags=$(kube_ldflags "$kube_version")
  [[ -x "$out/kube-controller-manager" ]] || kube_build "$out" kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$work/control" "$ldflags"
  [[ -x "$out/kube-scheduler" ]] || kube_build "$out" kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler "$work/control" "$ldflags"
fi
if [[ ! -x "$out/kubelet" || ! -x "$out/kube-proxy" ]]; then
  kube_module "$work/node" "$node_version" >/dev/null
  ldflags=$(kube_ldflags "$node_version")
  [[ -x "$out/kubelet" ]] || kube_build "$out" kubelet k8s.io/kubernetes/cmd/kubelet "$work/node" "$ldflags"
  [[ -x "$out/kube-proxy" ]] || kube_build "$out" kube-proxy k8s.io/kubernetes/cmd/kube-proxy "$work/node" "$ldflags"
fi
echo "$out"
