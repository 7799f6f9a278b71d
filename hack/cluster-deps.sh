#!/usr/bin/env bash
# Installs the node's runtime parts of the test cluster (test/cluster) from Debian:
# containerd and runc, the CNI plugins, and the tools the kubelet and kube-proxy call
# (iptables, conntrack, mount utilities). Package scripts are kept from starting any
# system service: hack/cluster.sh starts its own containerd with its own folders.
# Needs root.
set -euo pipefail

pkgs=(containerd runc containernetworking-plugins iptables conntrack ipset ethtool socat util-linux mount kmod procps openssl ca-certificates iproute2)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
[[ $(id -u) -eq 0 ]] || { echo "cluster-deps: installing ${missing[*]} needs root" >&2; exit 1; }

echo "cluster-deps: installing ${missing[*]}" >&2
policy=/usr/sbin/policy-rc.d ours=""
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && ours=1
fi
trap '[[ -n $ours ]] && rm -f "$policy"' EXIT
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
