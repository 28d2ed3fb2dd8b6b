#!/bin/bash
# build.sh - compile the cluster's Go programs from the Go module proxy alone (no GitHub releases,
# no container registry): kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
# kube-proxy and kubectl from k8s.io/kubernetes, plus helm and CoreDNS.
#
# One wrapper module (BIN_DIR/../wrap/go.mod) requires k8s.io/kubernetes, helm and CoreDNS together
# and replaces each ./staging module of k8s.io/kubernetes by its published k8s.io/* twin. All eight
# programs therefore share one set of k8s.io/* packages (v0.MINOR.PATCH of this Kubernetes), compiled
# once into the Go build cache: helm and CoreDNS cost little more than their own code, and a second
# build on a warm cache takes seconds. The versions are chosen so that helm and CoreDNS were made for
# the same k8s.io/* minor (helm v3.18 and CoreDNS v1.12.3 for Kubernetes 1.33).
#
# Usage: build.sh BIN_DIR       (called by cluster.sh; honours GOCACHE/GOMODCACHE/GOFLAGS)
set -euo pipefail
BIN=${1:?usage: build.sh BIN_DIR}
KVER=${KVER:-1.33.13}
HELM_VER=${HELM_VER:-v3.18.6}
COREDNS_VER=${COREDNS_VER:-v1.12.3}
PROGRAMS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl helm coredns)
W=$(dirname "$BIN")/wrap
mkdir -p "$BIN" "$W"
log() { echo "[cluster $(date +%T)] $*"; }

stamp="k8s=$KVER helm=$HELM_VER coredns=$COREDNS_VER go=$(go env GOVERSION)"
missing=()
for p in "${PROGRAMS[@]}"; do [ -x "$BIN/$p" ] || missing+=("$p"); done
if [ ${#missing[@]} -eq 0 ] && [ "$(cat "$BIN/.stamp" 2>/dev/null)" = "$stamp" ]; then
  log "binaries present ($stamp)"; exit 0
fi

log "module graph: k8s.io/kubernetes@v$KVER (first time: ~700 MB from the Go module proxy, about a minute)"
M=$(go mod download -json "k8s.io/kubernetes@v$KVER" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
minor=$(echo "$KVER" | cut -d. -f2)
{
  echo "module trip-duration/cluster-build"; echo
  echo "go $(sed -n 's/^go //p' "$M/go.mod")"; echo
  echo "require ("
  echo "	k8s.io/kubernetes v$KVER"
  echo "	helm.sh/helm/v3 $HELM_VER"
  echo "	github.com/coredns/coredns $COREDNS_VER"
  echo ")"; echo
  awk '/^require \(/,/^\)/' "$M/go.mod" | grep -v '=> '
  echo "replace ("
  # ./staging/src/k8s.io/X => its published twin k8s.io/X v0.MINOR.PATCH (sample-* are not on the proxy
  # and nothing here imports them)
  awk '/^replace \(/,/^\)/' "$M/go.mod" | grep '=>' | awk -v v="v0.${KVER#1.}" '{print "\t"$1" => "$1" "v}' \
    | grep -v -e sample-cli-plugin -e sample-controller -e sample-apiserver
  echo ")"
} >"$W/go.mod"
# a main package per program, so that `go mod tidy` keeps what they import (and nothing else)
cat >"$W/tools.go" <<GO
//go:build tools

package tools

import (
	_ "github.com/coredns/coredns"
	_ "helm.sh/helm/v3/cmd/helm"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
(cd "$W" && GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>"$W/tidy.log") || { cat "$W/tidy.log"; exit 1; }

# version stamps: without them the binaries say v0.0.0 and helm thinks the cluster is v1.20
hp=helm.sh/helm/v3
LDF="-s -w -X k8s.io/component-base/version.gitVersion=v$KVER -X k8s.io/component-base/version.gitMajor=1"
LDF+=" -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
LDF+=" -X k8s.io/client-go/pkg/version.gitVersion=v$KVER -X k8s.io/client-go/pkg/version.gitMajor=1"
LDF+=" -X k8s.io/client-go/pkg/version.gitMinor=$minor"
LDF+=" -X $hp/internal/version.version=$HELM_VER -X $hp/pkg/chartutil.k8sVersionMajor=1"
LDF+=" -X $hp/pkg/chartutil.k8sVersionMinor=$minor -X $hp/pkg/lint/rules.k8sVersionMajor=1"
LDF+=" -X $hp/pkg/lint/rules.k8sVersionMinor=$minor"
pkg() { case $1 in
  helm) echo helm.sh/helm/v3/cmd/helm ;; coredns) echo github.com/coredns/coredns ;;
  *) echo "k8s.io/kubernetes/cmd/$1" ;; esac; }
pkgs=(); for p in "${missing[@]}"; do pkgs+=("$(pkg "$p")"); done
[ ${#pkgs[@]} -eq 0 ] && for p in "${PROGRAMS[@]}"; do pkgs+=("$(pkg "$p")"); done
log "compiling ${#pkgs[@]} programs with $(nproc) cores (cold Go cache: ~10-12 min on 2 cores; warm: seconds)"
# one `go build` for all of them: its scheduler keeps every core busy across the programs' packages
t0=$(date +%s)
(
  cd "$W"
  CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags "$LDF" -o "$BIN/" "${pkgs[@]}" 2>&1 &
  b=$!
  # a cold build prints nothing for tens of minutes: show that it is moving
  while kill -0 $b 2>/dev/null; do
    sleep 60; kill -0 $b 2>/dev/null || break
    n=$(find "$(go env GOCACHE)" -newer "$W/go.mod" -type f 2>/dev/null | wc -l)
    log "  still compiling: $(( ($(date +%s)-t0)/60 )) min, $n objects new in the build cache"
  done
  wait $b
)
echo "$stamp" >"$BIN/.stamp"
log "compiled in $(( $(date +%s)-t0 ))s: $(cd "$BIN" && ls | tr '\n' ' ')"
