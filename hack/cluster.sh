#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, for test/cluster, built and run
# offline: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and
# kube-proxy (hack/cluster-assets.sh), Debian's containerd, runc and CNI plugins
# (hack/cluster-deps.sh), and images imported from local files, never pulled.
#
# The whole node lives in a network namespace of its own, $NETNS, joined to this host by
# one veth pair on 198.18.0.0/24 (RFC 2544's benchmarking range, which no real network
# uses): the node is 198.18.0.2, this host 198.18.0.1. Pods get 198.18.1.0/24 on a bridge
# inside the node, Services 198.19.0.0/16. Nothing has a default route, so no packet can
# leave the machine; kube-proxy's iptables rules live in the node's namespace and go with
# it. Run as root.
#
#   hack/cluster.sh up DIR       start the cluster; DIR/kubeconfig is an admin kubeconfig
#   hack/cluster.sh import DIR TAR...   import image archives into the node's containerd
#   hack/cluster.sh down DIR     stop everything and remove every process, mount,
#                                cgroup, namespace and rule it made, also after a failure
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
NETNS=${POSTWARDEN_CLUSTER_NETNS:-pw-node}
NODE_NAME=pw-node
HOST_IP=198.18.0.1
NODE_IP=198.18.0.2
POD_CIDR=198.18.1.0/24
SERVICE_CIDR=198.19.0.0/16
SERVICE_IP=198.19.0.1 # the kubernetes Service, first address of SERVICE_CIDR
# The pause image the node's containerd uses for pod sandboxes; built by test/cluster.
PAUSE_IMAGE=${PAUSE_IMAGE:-postwarden.local/pause:test}
CGROUP_ROOT=/postwarden-cluster

log() { echo "cluster: $*" >&2; }
die() { log "$*"; exit 1; }
in_node() { nsenter --net="/run/netns/$NETNS" -- "$@"; }

# pki DIR: a CA and a certificate for each component, with openssl.
pki() {
  local d=$1/pki
  mkdir -p "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=postwarden-test-cluster-ca -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
  openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
  # name subject extendedKeyUsage [subjectAltName]
  cert() {
    local name=$1 subj=$2 eku=$3 san=${4:-}
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$subj" \
      -keyout "$d/$name.key" -out "$d/$name.csr" 2>/dev/null
    {
      echo "basicConstraints=CA:FALSE"
      echo "keyUsage=digitalSignature,keyEncipherment"
      echo "extendedKeyUsage=$eku"
      [[ -n $san ]] && echo "subjectAltName=$san"
    } >"$d/$name.ext"
    openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
      -days 2 -extfile "$d/$name.ext" -out "$d/$name.crt" 2>/dev/null
  }
  cert apiserver /CN=kube-apiserver serverAuth \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:$NODE_IP,IP:$SERVICE_IP,IP:127.0.0.1"
  cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
  cert admin "/O=system:masters/CN=postwarden-test-admin" clientAuth
  cert controller-manager /CN=system:kube-controller-manager clientAuth
  cert scheduler /CN=system:kube-scheduler clientAuth
  cert kube-proxy /CN=system:kube-proxy clientAuth
  cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
  cert kubelet-serving "/CN=$NODE_NAME" serverAuth "DNS:$NODE_NAME,IP:$NODE_IP"
}

# kubeconfig DIR NAME: a kubeconfig for the certificate NAME.
kubeconfig() {
  local d=$1 name=$2
  cat >"$d/$name.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://$NODE_IP:6443
    certificate-authority: $d/pki/ca.crt
users:
- name: $name
  user:
    client-certificate: $d/pki/$name.crt
    client-key: $d/pki/$name.key
contexts:
- name: test
  context: {cluster: test, user: $name}
current-context: test
EOF
}

# daemon DIR NAME CMD...: runs CMD in the node's network namespace, logs to DIR/logs.
daemon() {
  local d=$1 name=$2
  shift 2
  mkdir -p "$d/logs" "$d/pids"
  nsenter --net="/run/netns/$NETNS" -- "$@" >"$d/logs/$name.log" 2>&1 &
  echo $! >"$d/pids/$name"
}

# wait_for WHAT SECONDS CMD...: retries CMD until it succeeds.
wait_for() {
  local what=$1 secs=$2
  shift 2
  for ((i = 0; i < secs * 5; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  die "$what did not come up in ${secs}s"
}

network_up() {
  ip netns add "$NETNS"
  ip link add pw-host type veth peer name pw-eth0
  ip link set pw-eth0 netns "$NETNS"
  ip addr add "$HOST_IP/24" dev pw-host
  ip link set pw-host up
  in_node ip link set lo up
  in_node ip addr add "$NODE_IP/24" dev pw-eth0
  in_node ip link set pw-eth0 up
  # Pods reach the node and this host through the node, which forwards; nothing else.
  in_node sysctl -qw net.ipv4.ip_forward=1
  in_node sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || modprobe br_netfilter 2>/dev/null || true
  in_node sysctl -qw net.bridge.bridge-nf-call-iptables=1 || log "bridge-nf-call-iptables is not settable: Service traffic between pods may fail"
  ip route add "$POD_CIDR" via "$NODE_IP" 2>/dev/null || true
}

containerd_up() {
  local d=$1
  mkdir -p "$d/containerd" "$d/cni/net.d"
  cat >"$d/cni/net.d/10-postwarden.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "postwarden-test",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "pw-br0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "routes": [{"dst": "198.18.0.0/15"}],
        "dataDir": "$d/cni/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  cat >"$d/containerd/config.toml" <<EOF
version = 2
root = "$d/containerd/root"
state = "$d/containerd/state"
[grpc]
  address = "$d/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  enable_selinux = false
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$d/cni/net.d"
EOF
  daemon "$d" containerd containerd --config "$d/containerd/config.toml"
  wait_for containerd 30 ctr --address "$d/containerd/containerd.sock" version
}

control_plane_up() {
  local d=$1 bin=$2
  daemon "$d" etcd "$bin/etcd" --data-dir "$d/etcd" --listen-client-urls http://127.0.0.1:2379 \
    --advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 \
    --unsafe-no-fsync --log-level warn
  daemon "$d" kube-apiserver "$bin/kube-apiserver" --etcd-servers http://127.0.0.1:2379 \
    --advertise-address "$NODE_IP" --bind-address 0.0.0.0 --secure-port 6443 \
    --service-cluster-ip-range "$SERVICE_CIDR" --service-node-port-range 30000-32767 \
    --client-ca-file "$d/pki/ca.crt" --tls-cert-file "$d/pki/apiserver.crt" --tls-private-key-file "$d/pki/apiserver.key" \
    --kubelet-client-certificate "$d/pki/apiserver-kubelet-client.crt" --kubelet-client-key "$d/pki/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$d/pki/ca.crt" --kubelet-preferred-address-types InternalIP \
    --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$d/pki/sa.pub" \
    --service-account-signing-key-file "$d/pki/sa.key" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --allow-privileged=false --profiling=false
  wait_for kube-apiserver 120 "$bin/kubectl" --kubeconfig "$d/admin.kubeconfig" get --raw /readyz
  daemon "$d" kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$d/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$d/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$d/controller-manager.kubeconfig" \
    --service-account-private-key-file "$d/pki/sa.key" --root-ca-file "$d/pki/ca.crt" \
    --use-service-account-credentials --leader-elect=false --bind-address 127.0.0.1 \
    --service-cluster-ip-range "$SERVICE_CIDR" --allocate-node-cidrs=false \
    --controllers '*,-node-ipam-controller'
  daemon "$d" kube-scheduler "$bin/kube-scheduler" --kubeconfig "$d/scheduler.kubeconfig" \
    --authentication-kubeconfig "$d/scheduler.kubeconfig" --authorization-kubeconfig "$d/scheduler.kubeconfig" \
    --leader-elect=false --bind-address 127.0.0.1
}

# cgroups_up: the kubelet's cgroupRoot must exist in every hierarchy; a new cpuset cgroup
# has no CPUs or memory nodes until it is given its parent's.
cgroups_up() {
  local c
  for c in /sys/fs/cgroup/*/; do
    [[ -e $c/cgroup.procs ]] || continue
    mkdir -p "$c$CGROUP_ROOT"
  done
  c=/sys/fs/cgroup/cpuset
  if [[ -d $c$CGROUP_ROOT ]]; then
    cat "$c/cpuset.cpus" >"$c$CGROUP_ROOT/cpuset.cpus"
    cat "$c/cpuset.mems" >"$c$CGROUP_ROOT/cpuset.mems"
  fi
}

node_up() {
  local d=$1 bin=$2
  cgroups_up
  mkdir -p "$d/kubelet" "$d/pod-logs"
  echo "nameserver $NODE_IP" >"$d/resolv.conf"
  cat >"$d/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $d/pki/ca.crt}
authorization: {mode: Webhook}
address: $NODE_IP
tlsCertFile: $d/pki/kubelet-serving.crt
tlsPrivateKeyFile: $d/pki/kubelet-serving.key
containerRuntimeEndpoint: unix://$d/containerd/containerd.sock
cgroupDriver: cgroupfs
cgroupRoot: $CGROUP_ROOT
failCgroupV1: false
failSwapOn: false
resolvConf: $d/resolv.conf
podLogsDir: $d/pod-logs
podCIDR: $POD_CIDR
maxPods: 60
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%}
evictionPressureTransitionPeriod: 5s
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 5s
shutdownGracePeriod: 0s
EOF
  daemon "$d" kubelet "$bin/kubelet" --config "$d/kubelet.yaml" --kubeconfig "$d/kubelet.kubeconfig" \
    --root-dir "$d/kubelet" --node-ip "$NODE_IP" --hostname-override "$NODE_NAME" --v 1
  cat >"$d/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $d/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
nodePortAddresses: [$NODE_IP/32]
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
conntrack: {maxPerCore: 0}
EOF
  daemon "$d" kube-proxy "$bin/kube-proxy" --config "$d/kube-proxy.yaml"
  wait_for "node $NODE_NAME Ready" 180 bash -c \
    "'$bin/kubectl' --kubeconfig '$d/admin.kubeconfig' get node $NODE_NAME -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -q True"
}

up() {
  local d=$1
  [[ $(id -u) -eq 0 ]] || die "the test cluster needs root"
  if [[ -e /run/netns/$NETNS ]]; then
    # A run that was killed leaves its namespace and cgroups (its processes end with the
    # session that ran it): remove them rather than refuse to start.
    log "removing the namespace and cgroups of a cluster left behind"
    down "$d/left-behind"
  fi
  mkdir -p "$d"
  d=$(cd "$d" && pwd)
  local bin
  bin=$("$repo/hack/cluster-assets.sh")
  "$repo/hack/cluster-deps.sh"
  echo "$bin" >"$d/bin"
  log "starting in $d with $bin"
  ls /run/netns 2>/dev/null | grep '^cni-' >"$d/netns-before" || true
  pki "$d"
  for n in admin controller-manager scheduler kube-proxy kubelet; do kubeconfig "$d" "$n"; done
  cp "$d/admin.kubeconfig" "$d/kubeconfig"
  network_up
  containerd_up "$d"
  control_plane_up "$d" "$bin"
  node_up "$d" "$bin"
  log "up: KUBECONFIG=$d/kubeconfig $bin/kubectl get nodes"
}

import() {
  local d=$1
  shift
  for tar in "$@"; do
    ctr --address "$d/containerd/containerd.sock" -n k8s.io images import "$tar" >/dev/null
  done
}

# kill_tree_of CGROUP: kills every process in a cgroup v1 hierarchy's subtree.
kill_cgroup() {
  local root=$1
  [[ -d $root ]] || return 0
  find "$root" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -9 2>/dev/null || true
}

down() {
  local d=$1
  [[ -d $d ]] && d=$(cd "$d" && pwd)
  log "stopping the cluster in $d"
  # The kubelet first, so it restarts nothing; then every pod process, by cgroup.
  for name in kubelet kube-proxy kube-scheduler kube-controller-manager; do
    [[ -f $d/pids/$name ]] && kill "$(cat "$d/pids/$name")" 2>/dev/null || true
  done
  for c in /sys/fs/cgroup/*"$CGROUP_ROOT"; do kill_cgroup "$c"; done
  pkill -9 -f "containerd-shim.*$d/containerd/containerd.sock" 2>/dev/null || true
  for name in containerd kube-apiserver etcd; do
    [[ -f $d/pids/$name ]] && kill "$(cat "$d/pids/$name")" 2>/dev/null || true
  done
  sleep 1
  for name in kubelet kube-proxy kube-scheduler kube-controller-manager containerd kube-apiserver etcd; do
    [[ -f $d/pids/$name ]] && kill -9 "$(cat "$d/pids/$name")" 2>/dev/null || true
  done
  # Mounts under the cluster's folder (volumes, overlay snapshots, netns bind mounts).
  for _ in 1 2 3; do
    awk -v p="$d/" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
      umount -l "$m" 2>/dev/null || true
    done
  done
  # Pod network namespaces made by this cluster's CNI calls.
  if [[ -f $d/netns-before ]]; then
    for ns in $(ls /run/netns 2>/dev/null | grep '^cni-' || true); do
      grep -qx "$ns" "$d/netns-before" || ip netns delete "$ns" 2>/dev/null || true
    done
  fi
  # Deleting the node's namespace removes its veth, bridge and iptables rules.
  ip netns delete "$NETNS" 2>/dev/null || true
  ip link delete pw-host 2>/dev/null || true
  # Cgroups, deepest first.
  for c in /sys/fs/cgroup/*"$CGROUP_ROOT"; do
    [[ -d $c ]] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  rm -rf "$d"
}

cmd=${1:-}
case $cmd in
up) [[ $# -eq 2 ]] || die "usage: $0 up DIR"; up "$2" ;;
import) [[ $# -ge 3 ]] || die "usage: $0 import DIR TAR..."; import "$2" "${@:3}" ;;
down) [[ $# -eq 2 ]] || die "usage: $0 down DIR"; down "$2" ;;
*) die "usage: $0 up|import|down DIR" ;;
esac
