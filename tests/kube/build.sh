#!/usr/bin/env bash
# Builds the real control plane the Kubernetes tests run against — kube-apiserver and
# kube-controller-manager (k8s.io/kubernetes) and etcd (go.etcd.io/etcd/server) at the versions
# pinned in go.mod/go.sum — into a cache outside the repository, keyed by those pins.
# Does nothing when they are already built. Prints the directory holding the binaries.
#
#   VROUTER_KUBE_CACHE   where to build (default: ~/.cache/vrouter-kube)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${VROUTER_KUBE_CACHE:-$HOME/.cache/vrouter-kube}"
# What the binaries report as their version (clients such as Helm check it): the pinned release.
kube_version=$(awk '$1 == "k8s.io/kubernetes" {print $2}' "$here/go.mod")
# Bump when the way of building changes (flags), so cached binaries are rebuilt.
recipe=2
# The key: the pinned modules, the recipe and the Go release that builds them.
key=$( (cat "$here/go.mod" "$here/go.sum"; echo "$recipe"; go env GOVERSION 2>/dev/null) | sha256sum | cut -c1-16)
out="$cache/$key"
bins=(kube-apiserver kube-controller-manager etcd)

done_already=1
for b in "${bins[@]}"; do [ -x "$out/$b" ] || done_already=0; done
if [ "$done_already" = 1 ]; then
    echo "$out"
    exit 0
fi

command -v go >/dev/null || { echo "tests/kube/build.sh: go is not installed" >&2; exit 1; }
mkdir -p "$out.tmp"
cd "$here"
# -trimpath and no debug info: smaller binaries, and the cache key alone decides a rebuild.
major=${kube_version#v}; major=${major%%.*}
minor=${kube_version#v*.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
flags=(-trimpath -ldflags "$ldflags")
echo "tests/kube/build.sh: building the control plane into $out (takes minutes the first time)" >&2
GOFLAGS=-mod=readonly go build "${flags[@]}" -o "$out.tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver >&2
GOFLAGS=-mod=readonly go build "${flags[@]}" -o "$out.tmp/kube-controller-manager" k8s.io/kubernetes/cmd/kube-controller-manager >&2
GOFLAGS=-mod=readonly go build "${flags[@]}" -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3 >&2
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out"
