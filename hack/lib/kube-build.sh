# Functions to build Kubernetes' own commands from the Go module proxy, sourced by
# hack/envtest-assets.sh and hack/cluster-assets.sh. Kubernetes publishes no binaries to
# the proxy, but its source is there as the module k8s.io/kubernetes.

# kube_module DIR VERSION: writes DIR/go.mod, a module that can build k8s.io/kubernetes at
# VERSION (e.g. v1.37.2). Kubernetes' own go.mod points every k8s.io staging module at
# ./staging/...; a module that requires it has to point them at the published v0.X.Y.
kube_module() {
  local dir=$1 version=$2 api_version kube_mod
  api_version="v0.${version#v1.}"
  mkdir -p "$dir"
  kube_mod=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module postwarden.local/kube-build"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes $version"
    echo
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#replace \1 => \1 '"$api_version"'#p' "$kube_mod"
  } >"$dir/go.mod"
  echo "$kube_mod"
}

# kube_ldflags VERSION: without these the binaries call themselves v0.0.0-master, clients
# warn about skew, and the kubelet reports a node version the API server distrusts.
kube_ldflags() {
  local version=$1 minor flags=""
  minor=${version#v1.}
  minor=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  echo "$flags"
}

# kube_build OUT NAME PACKAGE DIR LDFLAGS: builds a static PACKAGE in the module DIR as
# OUT/NAME, atomically, so an interrupted build never leaves a binary that looks done.
kube_build() {
  local out=$1 name=$2 pkg=$3 dir=$4 ldflags=$5
  echo "kube-build: building $name ($pkg), this takes a few minutes the first time" >&2
  (cd "$dir" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/$name.tmp" "$pkg")
  mv "$out/$name.tmp" "$out/$name"
}
