#!/bin/bash
# cluster.sh - a real two-node Kubernetes 1.33 on this machine, from package registries alone.
#
#   infra/cluster/cluster.sh up        # `make cluster-up`: idempotent; a second run takes seconds
#   infra/cluster/cluster.sh down      # `make cluster-down`: stop everything by PID (state kept)
#   infra/cluster/cluster.sh purge     # down, then delete the cluster's state (binaries and Go caches stay)
#   infra/cluster/cluster.sh status    # what runs; the KUBECONFIG line to use
#   infra/cluster/cluster.sh import [--node cpu|gpu] IMAGE...   # docker image -> the nodes' containerd
#   infra/cluster/cluster.sh volumes   # offer released local volumes again (wiped)
#
# What runs (every listener on 127.0.0.1 or on an address of the pod bridge, which exists only on
# this machine: 10.88.0.1 for CoreDNS and the apiserver relay, 10.87.0.2/.3 for the two kubelets):
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy
# (iptables), CoreDNS, and two nodes, each a kubelet with its own containerd:
#   trip-duration-cpu   where everything runs that does not ask for a GPU
#   trip-duration-gpu   labelled and tainted as a GPU node of a cloud cluster is
#                       (nvidia.com/gpu.present=true, taint nvidia.com/gpu:NoSchedule) and advertising
#                       the extended resource nvidia.com/gpu: 1, so a Job's GPU request, node selector
#                       and toleration are scheduled for real. There is no GPU behind it: XGBoost's
#                       device=auto falls back to CPU and says so in the logs.
# From Debian: etcd, containerd, runc, CNI plugins, iptables, socat. Compiled from the Go module proxy
# (build.sh): the Kubernetes programs, helm, CoreDNS. Pods cannot send a packet off this machine,
# and every registry name resolves to a closed local port: images come from `import` only.
# Storage: a default StorageClass `local` with static local PVs (fsGroup works on them); released
# ones are wiped and made available again on each `up`.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
C=${CLUSTER_DIR:-$REPO/.cluster}
BIN=$C/bin
export PATH=$BIN:/usr/local/go/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH
APISERVER_PORT=${CLUSTER_APISERVER_PORT:-16443}
ETCD_PORT=${CLUSTER_ETCD_PORT:-23790}
SVC_CIDR=10.96.0.0/16
SVC_IP=10.96.0.1
POD_CIDR=10.88.0.0/16
POD_GW=10.88.0.1
BRIDGE=tdk8s0
NODES=(cpu gpu)
PV_COUNT=${CLUSTER_PV_COUNT:-6}
KUBECONFIG_FILE=$C/etc/admin.kubeconfig
log() { echo "[cluster $(date +%T)] $*"; }
die() { echo "cluster: $*" >&2; exit 1; }
node_name() { echo "trip-duration-$1"; }
# each node's address: on the pod bridge (so it exists only on this machine), outside the pods' range
node_ip() { [ "$1" = cpu ] && echo 10.87.0.2 || echo 10.87.0.3; }
ctrd_sock() { echo "$C/nodes/$1/run/containerd.sock"; }
kc() { kubectl --kubeconfig "$KUBECONFIG_FILE" "$@"; }
phase() { local t0 name=$1; shift; t0=$(date +%s); log "phase $name ..."; "$@"; log "phase $name done in $(( $(date +%s)-t0 ))s"; }

# ---------------------------------------------------------------- deps
deps() {
  [ "$(id -u)" = 0 ] || die "needs root (network namespaces, iptables, mounts): run as root"
  local pkgs="etcd-server containerd runc containernetworking-plugins iptables openssl conntrack socat"
  local missing=() p
  for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  command -v go >/dev/null || die "no Go toolchain on PATH (the Kubernetes programs are compiled here): install Go >= 1.24"
  modprobe br_netfilter 2>/dev/null || true; modprobe overlay 2>/dev/null || true
  sysctl -qw net.ipv4.ip_forward=1 2>/dev/null || true
  sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
}

# ---------------------------------------------------------------- pki
pki() {
  local P=$C/pki
  mkdir -p "$P" "$C/etc"
  (
    cd "$P"
    [ -f ca.crt ] || { openssl genrsa -out ca.key 2048 2>/dev/null
      openssl req -x509 -new -nodes -key ca.key -subj "/CN=trip-duration-cluster-ca" -days 3650 -out ca.crt; }
    [ -f sa.key ] || { openssl genrsa -out sa.key 2048 2>/dev/null; openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null; }
    cert() { # file CN O [SANs]
      local n=$1 cn=$2 o=$3 san=${4:-} subj
      [ -f "$n.crt" ] && return
      openssl genrsa -out "$n.key" 2048 2>/dev/null
      subj="/CN=$cn"; [ -n "$o" ] && subj="/O=$o/CN=$cn"
      openssl req -new -key "$n.key" -subj "$subj" -out "$n.csr"
      { echo "basicConstraints=CA:FALSE"; echo "keyUsage=critical,digitalSignature,keyEncipherment"
        if [ -n "$san" ]; then echo "extendedKeyUsage=serverAuth,clientAuth"; echo "subjectAltName=$san"
        else echo "extendedKeyUsage=clientAuth"; fi; } >"$n.ext"
      openssl x509 -req -in "$n.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile "$n.ext" -out "$n.crt" 2>/dev/null
      rm -f "$n.csr" "$n.ext"
    }
    cert apiserver kube-apiserver "" "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$SVC_IP,IP:$POD_GW"
    cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
    cert admin admin system:masters
    cert controller-manager system:kube-controller-manager ""
    cert scheduler system:kube-scheduler ""
    cert kube-proxy system:kube-proxy ""
    local n
    for n in "${NODES[@]}"; do
      cert "kubelet-$n" "system:node:$(node_name "$n")" system:nodes
      cert "kubelet-$n-server" "$(node_name "$n")" "" "DNS:$(node_name "$n"),IP:$(node_ip "$n")"
    done
  )
  kubeconfig admin admin
  kubeconfig controller-manager controller-manager
  kubeconfig scheduler scheduler
  kubeconfig kube-proxy kube-proxy
  local n; for n in "${NODES[@]}"; do kubeconfig "kubelet-$n" "kubelet-$n"; done
  chmod 600 "$C"/etc/*.kubeconfig "$C"/pki/*.key
}
kubeconfig() { # name cert
  local f=$C/etc/$1.kubeconfig
  [ -f "$f" ] && return
  KUBECONFIG=$f kubectl config set-cluster trip-duration --server="https://127.0.0.1:$APISERVER_PORT" \
    --certificate-authority="$C/pki/ca.crt" --embed-certs >/dev/null
  KUBECONFIG=$f kubectl config set-credentials "$1" --client-certificate="$C/pki/$2.crt" --client-key="$C/pki/$2.key" --embed-certs >/dev/null
  KUBECONFIG=$f kubectl config set-context trip-duration --cluster=trip-duration --user="$1" >/dev/null
  KUBECONFIG=$f kubectl config use-context trip-duration >/dev/null
}

# ---------------------------------------------------------------- pause image (static C, no registry)
pause_image() {
  local I=$C/images
  [ -f "$I/pause.tar" ] && return
  mkdir -p "$I/pause-root"
  cat >"$I/pause.c" <<'EOF'
#include <signal.h>
#include <unistd.h>
#include <sys/wait.h>
static void die(int s){ (void)s; _exit(0); }
static void reap(int s){ (void)s; while (waitpid(-1, 0, WNOHANG) > 0); }
int main(void){ signal(SIGTERM, die); signal(SIGINT, die); signal(SIGCHLD, reap); for(;;) pause(); }
EOF
  gcc -static -O2 -o "$I/pause-root/pause" "$I/pause.c"
  command -v docker >/dev/null && docker info >/dev/null 2>&1 || die "the Docker engine must run (it packs the images): start dockerd"
  tar -C "$I/pause-root" -c . | docker import -c 'ENTRYPOINT ["/pause"]' - registry.k8s.io/pause:3.10 >/dev/null
  docker save registry.k8s.io/pause:3.10 -o "$I/pause.tar"
}

# ---------------------------------------------------------------- configs
wr() { cat >"$1.new"; if cmp -s "$1.new" "$1"; then rm -f "$1.new"; else mv "$1.new" "$1"; fi; } # kube-proxy exits when its config is rewritten
configs() {
  mkdir -p "$C/cni/net.d" "$C/etc/certs.d" "$C/logs" "$C/run"
  local r n
  # every registry a chart may name resolves to a closed local port: a missing image fails at once
  for r in docker.io ghcr.io quay.io registry.k8s.io gcr.io public.ecr.aws; do
    mkdir -p "$C/etc/certs.d/$r"
    printf 'server = "http://127.0.0.1:1"\n[host."http://127.0.0.1:1"]\n  capabilities = ["pull", "resolve"]\n' >"$C/etc/certs.d/$r/hosts.toml"
  done
  for n in "${NODES[@]}"; do
    local N=$C/nodes/$n
    mkdir -p "$N/run" "$N/kubelet" "$N/manifests"
    wr "$N/containerd.toml" <<EOF
version = 2
root = "$N/containerd/root"
state = "$N/containerd/state"
[grpc]
  address = "$(ctrd_sock "$n")"
[ttrpc]
  address = "$N/run/containerd.ttrpc.sock"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  enable_selinux = false
  # root here lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj below containerd's own
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
        Root = "$N/run/runc"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$C/etc/certs.d"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$C/cni/net.d"
EOF
    wr "$N/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $(node_ip "$n")
port: 10250
readOnlyPort: 0
healthzBindAddress: $(node_ip "$n")
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $C/pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $C/pki/kubelet-$n-server.crt
tlsPrivateKeyFile: $C/pki/kubelet-$n-server.key
cgroupDriver: cgroupfs
# two kubelets share this machine: each keeps its pods under its own cgroup root
cgroupRoot: /td-$n
failSwapOn: false
containerRuntimeEndpoint: unix://$(ctrd_sock "$n")
clusterDomain: cluster.local
clusterDNS: [$POD_GW]
resolvConf: /etc/resolv.conf
staticPodPath: $N/manifests
# two kubelets: each keeps its own pod logs (a shared /var/log/pods gets swept by the other's GC)
podLogsDir: $N/pod-logs
serializeImagePulls: false
evictionHard: {memory.available: "200Mi", nodefs.available: "3%", imagefs.available: "3%"}
imageGCHighThresholdPercent: 100
protectKernelDefaults: false
EOF
  done
  wr "$C/etc/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $C/etc/kube-proxy.kubeconfig}
hostnameOverride: $(node_name cpu)
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  # cluster DNS on the bridge address only; names outside cluster.local get NXDOMAIN (nothing is forwarded)
  wr "$C/etc/Corefile" <<EOF
cluster.local:53 {
  bind $POD_GW
  errors
  kubernetes cluster.local {
    kubeconfig $KUBECONFIG_FILE trip-duration
    pods insecure
  }
  cache 30
}
.:53 {
  bind $POD_GW
  template ANY ANY {
    rcode NXDOMAIN
  }
}
EOF
  wr "$C/cni/net.d/10-trip-duration.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "trip-duration",
  "plugins": [
    { "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": { "type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}] } },
    { "type": "portmap", "capabilities": {"portMappings": true} },
    { "type": "loopback" }
  ]
}
EOF
}

# ---------------------------------------------------------------- processes
running() { [ -f "$C/run/$1.pid" ] && kill -0 "$(cat "$C/run/$1.pid")" 2>/dev/null; }
spawn() { # name cmd...
  local n=$1; shift
  if running "$n"; then log "  $n already running (pid $(cat "$C/run/$n.pid"))"; return; fi
  nohup "$@" >>"$C/logs/$n.log" 2>&1 &
  echo $! >"$C/run/$n.pid"; log "  started $n (pid $!, log $C/logs/$n.log)"
}
waitfor() { # what seconds cmd...
  local what=$1 secs=$2 i; shift 2
  for i in $(seq "$secs"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  die "$what did not come up in ${secs}s: see $C/logs/"
}

network() {
  # the pod bridge: its gateway 10.88.0.1 lives only on this machine
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge; ip addr add "$POD_GW/16" dev "$BRIDGE"; ip link set "$BRIDGE" up
  fi
  local n
  for n in "${NODES[@]}"; do
    ip addr show dev "$BRIDGE" | grep -q " $(node_ip "$n")/" || ip addr add "$(node_ip "$n")/32" dev "$BRIDGE"
  done
  # Docker's FORWARD policy is DROP, which drops pod -> ClusterIP -> pod traffic (routed back into
  # the bridge): accept what stays on the bridge, drop whatever a pod sends anywhere else
  iptables -N TD-CLUSTER-FORWARD 2>/dev/null || iptables -F TD-CLUSTER-FORWARD
  iptables -A TD-CLUSTER-FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
  iptables -A TD-CLUSTER-FORWARD -s "$POD_CIDR" ! -o "$BRIDGE" -j DROP
  iptables -C FORWARD -j TD-CLUSTER-FORWARD 2>/dev/null || iptables -I FORWARD 1 -j TD-CLUSTER-FORWARD
}

control_plane() {
  local P=$C/pki
  mkdir -p "$C/data"
  spawn etcd etcd --name trip-duration --data-dir "$C/data/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 10))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 10))" \
    --initial-cluster "trip-duration=http://127.0.0.1:$((ETCD_PORT + 10))" --listen-metrics-urls "" --quota-backend-bytes 2147483648
  waitfor etcd 60 curl -sf "http://127.0.0.1:$ETCD_PORT/health"
  spawn kube-apiserver kube-apiserver \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
    --service-cluster-ip-range "$SVC_CIDR" --allow-privileged=true \
    --tls-cert-file "$P/apiserver.crt" --tls-private-key-file "$P/apiserver.key" --client-ca-file "$P/ca.crt" \
    --kubelet-client-certificate "$P/apiserver-kubelet-client.crt" --kubelet-client-key "$P/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP --kubelet-certificate-authority "$P/ca.crt" \
    --service-account-key-file "$P/sa.pub" --service-account-signing-key-file "$P/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --advertise-address "$POD_GW" --endpoint-reconciler-type lease \
    --profiling=false --v=1
  # the apiserver listens on 127.0.0.1 only; pods reach it through this relay on the bridge address
  spawn apiserver-relay socat "TCP-LISTEN:$APISERVER_PORT,bind=$POD_GW,fork,reuseaddr" "TCP:127.0.0.1:$APISERVER_PORT"
  waitfor kube-apiserver 120 kc get --raw /readyz
  spawn kube-controller-manager kube-controller-manager \
    --kubeconfig "$C/etc/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$C/etc/controller-manager.kubeconfig" --authorization-kubeconfig "$C/etc/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 10257 --leader-elect=false \
    --service-account-private-key-file "$P/sa.key" --root-ca-file "$P/ca.crt" \
    --cluster-signing-cert-file "$P/ca.crt" --cluster-signing-key-file "$P/ca.key" \
    --use-service-account-credentials=true --service-cluster-ip-range "$SVC_CIDR" \
    --controllers '*,-cloud-node-lifecycle' --profiling=false --v=1
  spawn kube-scheduler kube-scheduler --kubeconfig "$C/etc/scheduler.kubeconfig" \
    --authentication-kubeconfig "$C/etc/scheduler.kubeconfig" --authorization-kubeconfig "$C/etc/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 10259 --leader-elect=false --profiling=false --v=1
}

cgroup_roots() { # kubelet wants its cgroupRoot to exist in every v1 hierarchy (or the v2 tree)
  local n=$1 d
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then mkdir -p "/sys/fs/cgroup/td-$n"; return; fi
  for d in /sys/fs/cgroup/*/; do [ -L "${d%/}" ] || mkdir -p "$d/td-$n" 2>/dev/null || true; done
}

nodes() {
  local n
  for n in "${NODES[@]}"; do
    spawn "containerd-$n" containerd --config "$C/nodes/$n/containerd.toml"
  done
  for n in "${NODES[@]}"; do
    waitfor "containerd-$n" 60 ctr -a "$(ctrd_sock "$n")" version
    ctr -a "$(ctrd_sock "$n")" -n k8s.io images ls -q 2>/dev/null | grep -qx "registry.k8s.io/pause:3.10" \
      || ctr -a "$(ctrd_sock "$n")" -n k8s.io images import "$C/images/pause.tar" >/dev/null
    cgroup_roots "$n"
    spawn "kubelet-$n" kubelet --config "$C/nodes/$n/kubelet.yaml" --kubeconfig "$C/etc/kubelet-$n.kubeconfig" \
      --root-dir "$C/nodes/$n/kubelet" --cert-dir "$C/nodes/$n/kubelet/pki" \
      --hostname-override "$(node_name "$n")" --node-ip "$(node_ip "$n")" --v=1
  done
  spawn kube-proxy kube-proxy --config "$C/etc/kube-proxy.yaml" --v=1
  spawn coredns coredns -conf "$C/etc/Corefile"
}

ready() {
  local n
  for n in "${NODES[@]}"; do
    waitfor "node $(node_name "$n") registered" 120 kc get node "$(node_name "$n")"
  done
  kc wait --for=condition=Ready node --all --timeout=180s >/dev/null
  # the GPU node, as a cloud GPU node pool presents it (GKE/EKS label, NVIDIA device plugin's taint
  # and extended resource); kubelet keeps an extended resource it was told about in node status
  local gpu; gpu=$(node_name gpu)
  KUBECONFIG=$KUBECONFIG_FILE "$HERE/gpu-node.sh" "$gpu" >/dev/null
  kc label node "$gpu" trip-duration.dev/node-kind=gpu --overwrite >/dev/null
  kc label node "$(node_name cpu)" trip-duration.dev/node-kind=cpu --overwrite >/dev/null
  waitfor "nvidia.com/gpu in allocatable" 60 sh -c \
    "kubectl --kubeconfig '$KUBECONFIG_FILE' get node '$gpu' -o jsonpath='{.status.allocatable.nvidia\.com/gpu}' | grep -qx 1"
  waitfor "default serviceaccount" 60 kc get sa default -n default
  storage
}

storage() {
  kc apply -f - >/dev/null <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Retain
EOF
  local i dir phase
  for i in $(seq "$PV_COUNT"); do
    dir=$C/volumes/pv$i
    phase=$(kc get pv "td-local-pv$i" -o jsonpath='{.status.phase}' 2>/dev/null || true)
    if [ "$phase" = Released ] || [ "$phase" = Failed ]; then
      # the claim is gone (e.g. after helm uninstall + kubectl delete pvc): wipe and offer it again
      rm -rf "$dir"; kc patch pv "td-local-pv$i" --type=json -p '[{"op":"remove","path":"/spec/claimRef"}]' >/dev/null
      log "  recycled released volume td-local-pv$i"
    fi
    mkdir -p "$dir"
    kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolume
metadata: {name: td-local-pv$i}
spec:
  capacity: {storage: 20Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: local
  local: {path: $dir}
  nodeAffinity:
    required:
      nodeSelectorTerms:
        - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [$(node_name cpu)]}]
EOF
  done
}

# ---------------------------------------------------------------- commands
up() {
  local t0; t0=$(date +%s)
  phase deps deps
  phase build bash "$HERE/build.sh" "$BIN"
  phase pki pki
  pause_image
  configs
  phase network network
  phase control-plane control_plane
  phase nodes nodes
  phase ready ready
  log "cluster up in $(( $(date +%s)-t0 ))s: nodes $(kc get nodes -o jsonpath='{.items[*].metadata.name}')"
  echo "export KUBECONFIG=$KUBECONFIG_FILE"
}

stop() { # name
  local n=$1 pid i
  running "$n" || { rm -f "$C/run/$n.pid"; return 0; }
  pid=$(cat "$C/run/$n.pid"); kill "$pid" 2>/dev/null || true
  for i in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
  rm -f "$C/run/$n.pid"; log "  stopped $n ($pid)"
}

down() {
  [ -d "$C/run" ] || { log "no cluster state in $C"; return 0; }
  local n sock t
  if running kube-apiserver; then
    for n in "${NODES[@]}"; do running "kubelet-$n" || continue
      # let the kubelets tear pods down (CNI removes their veths and addresses)
      kc delete pods --all -A --grace-period=3 --timeout=40s --wait=true >/dev/null 2>&1 || true; break; done
  fi
  for n in "${NODES[@]}"; do stop "kubelet-$n"; done
  for n in "${NODES[@]}"; do
    sock=$(ctrd_sock "$n")
    if running "containerd-$n"; then
      for t in $(ctr -a "$sock" -n k8s.io tasks ls -q 2>/dev/null); do ctr -a "$sock" -n k8s.io tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
      sleep 1
      for t in $(ctr -a "$sock" -n k8s.io tasks ls -q 2>/dev/null); do ctr -a "$sock" -n k8s.io tasks delete -f "$t" >/dev/null 2>&1 || true; done
      for t in $(ctr -a "$sock" -n k8s.io containers ls -q 2>/dev/null); do ctr -a "$sock" -n k8s.io containers delete "$t" >/dev/null 2>&1 || true; done
    fi
    stop "containerd-$n"
    # shims of our containerd only (matched by its socket path)
    for t in $(ps -eo pid=,args= | awk -v s="$sock" 'index($0, "-address " s) && /containerd-shim/ {print $1}'); do kill "$t" 2>/dev/null || true; done
  done
  for n in coredns kube-proxy kube-scheduler kube-controller-manager apiserver-relay kube-apiserver etcd; do stop "$n"; done
  [ -x "$BIN/kube-proxy" ] && "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  # what the kubelets added to iptables (KUBE-FIREWALL, KUBE-KUBELET-CANARY, ...)
  local ipt tb r ch
  for ipt in iptables ip6tables; do for tb in filter nat mangle; do
    $ipt -t $tb -S 2>/dev/null | grep -E '^-A [A-Z]+ .*-j KUBE-' | grep -vE '^-A KUBE-' | sed 's/^-A/-D/' \
      | while read -r r; do eval "$ipt -t $tb $r" 2>/dev/null || true; done || true
    for ch in $($ipt -t $tb -S 2>/dev/null | awk '/^-N KUBE-/{print $2}'); do $ipt -t $tb -F "$ch" 2>/dev/null || true; done
    for ch in $($ipt -t $tb -S 2>/dev/null | awk '/^-N KUBE-/{print $2}'); do $ipt -t $tb -X "$ch" 2>/dev/null || true; done
  done; done
  awk -v c="$C/" 'index($2, c) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done || true
  if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link delete "$BRIDGE"; fi
  while iptables -D FORWARD -j TD-CLUSTER-FORWARD 2>/dev/null; do :; done
  iptables -F TD-CLUSTER-FORWARD 2>/dev/null || true; iptables -X TD-CLUSTER-FORWARD 2>/dev/null || true
  for n in "${NODES[@]}"; do for t in /sys/fs/cgroup/*/td-$n /sys/fs/cgroup/td-$n; do
    if [ -d "$t" ]; then find "$t" -depth -type d -exec rmdir {} \; 2>/dev/null || true; fi; done; done
  log "cluster down (state kept in $C; \`$0 purge\` deletes it)"
}

purge() {
  down
  rm -rf "$C/data" "$C/nodes" "$C/pki" "$C/etc" "$C/cni" "$C/volumes" "$C/logs" "$C/run" /var/lib/cni/networks/trip-duration
  log "purged cluster state (kept: $BIN, $C/images, Go caches)"
}

status() {
  local n
  for n in etcd kube-apiserver apiserver-relay kube-controller-manager kube-scheduler kube-proxy coredns \
           containerd-cpu kubelet-cpu containerd-gpu kubelet-gpu; do
    if running "$n"; then echo "  $n: running (pid $(cat "$C/run/$n.pid"))"; else echo "  $n: stopped"; fi
  done
  running kube-apiserver && kc get nodes -o wide 2>/dev/null || true
  echo "export KUBECONFIG=$KUBECONFIG_FILE"
}

normalise() { # docker's short names as containerd stores them
  local r=$1
  case "${r%%/*}" in *.*|*:*|localhost) ;; *) case "$r" in */*) r=docker.io/$r ;; *) r=docker.io/library/$r ;; esac ;; esac
  echo "$r"
}
import_images() { # [--node cpu|gpu] IMAGE...: docker image -> containerd of the node(s)
  local targets=("${NODES[@]}") img n t0
  if [ "${1:-}" = --node ]; then targets=("$2"); shift 2; fi
  [ $# -gt 0 ] || die "usage: $0 import [--node cpu|gpu] IMAGE..."
  for img in "$@"; do
    t0=$(date +%s)
    local id stamp done_on=()
    id=$(docker image inspect "$img" --format '{{.Id}}') || die "no docker image $img: build it first"
    for n in "${targets[@]}"; do
      running "containerd-$n" || die "containerd-$n is not running: $0 up first"
      # the same image (by Docker's id) already imported, and still there: nothing to do
      stamp=$C/nodes/$n/imported/$(echo "$img" | tr '/:' '__')
      if [ "$(cat "$stamp" 2>/dev/null)" = "$id" ] && \
         ctr -a "$(ctrd_sock "$n")" -n k8s.io images ls -q | grep -qx "$(normalise "$img")"; then continue; fi
      docker save "$img" | ctr -a "$(ctrd_sock "$n")" -n k8s.io images import - >/dev/null
      mkdir -p "$(dirname "$stamp")"; echo "$id" >"$stamp"; done_on+=("$n")
    done
    if [ ${#done_on[@]} -eq 0 ]; then log "$img already on ${targets[*]}"; continue; fi
    targets_done="${done_on[*]}"
    log "imported $img into $targets_done in $(( $(date +%s)-t0 ))s"
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  purge) purge ;;
  status) status ;;
  import) shift; import_images "$@" ;;
  volumes) storage ;;
  *) echo "usage: $0 up|down|purge|status|volumes|import [--node cpu|gpu] IMAGE..." >&2; exit 2 ;;
esac
