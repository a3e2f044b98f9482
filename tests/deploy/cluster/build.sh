#!/bin/bash
# Build the node's Kubernetes binaries once per machine: kubelet, kube-scheduler, kube-controller-manager and
# kube-proxy (v1.20.2), from the same Debian source tree, GOPATH and Go build cache as the shared kube-apiserver
# tool (shared/tools/kube-apiserver/build.sh, which this runs first when its binary is missing), in one
# `go build` so the four share every compiled package.
#
#   bash tests/deploy/cluster/build.sh [CACHE]    -> prints CACHE/bin (default ~/.cache/factory-cluster)
#
# Needs root on Debian (apt-get). About 25 minutes on 2 cores the first time; an existing build is kept.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
C=$(realpath -m "${1:-${FACTORY_CLUSTER_CACHE:-$HOME/.cache/factory-cluster}}")
APISERVER_TOOL=${KUBE_APISERVER_TOOL:-$HERE/../../../../shared/tools/kube-apiserver}
W=$(realpath -m "${KUBE_APISERVER_WORKDIR:-$HOME/.cache/kube-apiserver-debian}")
BINS=(kubelet kube-scheduler kube-controller-manager kube-proxy)
mkdir -p "$C/bin"
done_all=1; for b in "${BINS[@]}" kube-apiserver; do [ -x "$C/bin/$b" ] || done_all=0; done
if [ $done_all = 1 ]; then echo "$C/bin"; exit 0; fi

start=$(date +%s)
if [ ! -x "$W/bin/kube-apiserver" ]; then
  [ -f "$APISERVER_TOOL/build.sh" ] || { echo "no kube-apiserver build tool at $APISERVER_TOOL (set KUBE_APISERVER_TOOL)" >&2; exit 1; }
  bash "$APISERVER_TOOL/build.sh" "$W" >&2
fi
ln -sfn "$W/bin/kube-apiserver" "$C/bin/kube-apiserver"
# GOPATH-mode build, exactly as the API server's (k8s 1.20 predates Go 1.19's module rules).
export GOPATH="$W/gopath" GOCACHE="$W/gocache" GO111MODULE=off GOPROXY=off CGO_ENABLED=0 GOFLAGS=
cd "$W/gopath/src/k8s.io/kubernetes"
LD="-s -w"
for P in k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version k8s.io/kubernetes/vendor/k8s.io/component-base/version; do
  LD="$LD -X $P.gitVersion=v1.20.2 -X $P.gitMajor=1 -X $P.gitMinor=20 -X $P.gitTreeState=archive"
done
# `go build -o DIR` with several main packages writes one binary per package into DIR.
go build -ldflags "$LD" -o "$C/bin/" k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-proxy
for b in "${BINS[@]}"; do "$C/bin/$b" --version >&2; done
echo "built ${BINS[*]} in $(( $(date +%s) - start )) s" >&2
echo "$C/bin"
