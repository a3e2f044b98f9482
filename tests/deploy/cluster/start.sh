#!/bin/bash
# Start a single-node Kubernetes 1.20 cluster on this machine, for the deployment tests:
# etcd, kube-apiserver (PodSecurityPolicy admission on), kube-controller-manager, kube-scheduler, kubelet on
# containerd (CRI, overlayfs, runc) with the bridge CNI, kube-proxy (iptables), a cluster DNS (dnsmasq fed by
# addons.py, which also binds each namespace's Pod Security level to its PodSecurityPolicy), and hostPath
# PersistentVolumes for StatefulSets. Images under IMAGES (*.tar from docker/build-local.sh, and the pause
# image this builds) are imported into containerd once; its image store is kept in CACHE between runs.
#
#   bash tests/deploy/cluster/start.sh RUNDIR [BIN_DIR]   -> prints RUNDIR/kubeconfig
#   bash tests/deploy/cluster/stop.sh RUNDIR               -> stops it and removes its pods and rules
#
# Root only. BIN_DIR: tests/deploy/cluster/build.sh's output (default ~/.cache/factory-cluster/bin).
# RUNDIR/env holds the node's addresses (NODE_IP, the bridge's gateway, where pods reach the host).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
D=$(realpath -m "$1")
CACHE=$(realpath -m "${FACTORY_CLUSTER_CACHE:-$HOME/.cache/factory-cluster}")
B=$(realpath -m "${2:-$CACHE/bin}")
IMAGES=$(realpath -m "${FACTORY_IMAGES:-$HOME/.cache/factory-images/images}")
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
NODE=factory-node
BRIDGE=factory-br0
POD_CIDR=10.244.0.0/24
NODE_IP=10.244.0.1          # the bridge's address: the node, its DNS and the host as pods see them
SERVICE_CIDR=10.96.0.0/16
for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
  [ -x "$B/$b" ] || { echo "no $B/$b: run tests/deploy/cluster/build.sh" >&2; exit 1; }
done
for t in etcd containerd runc iptables dnsmasq openssl curl gcc conntrack; do
  command -v $t >/dev/null || { echo "$t is not installed" >&2; exit 1; }
done
[ -x /usr/lib/cni/bridge ] || { echo "no /usr/lib/cni/bridge (apt-get install containernetworking-plugins)" >&2; exit 1; }
if ip link show "$BRIDGE" >/dev/null 2>&1; then echo "$BRIDGE exists: another cluster runs (stop.sh its RUNDIR)" >&2; exit 1; fi
mkdir -p "$D"/{log,cni,pv,kubelet,certs} "$CACHE/containerd"; : > "$D/pids"
port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
started() { echo $! >> "$D/pids"; }
wait_for() {  # SECONDS WHAT COMMAND...: poll until COMMAND succeeds
  local n=$(( $1 * 4 )) what=$2; shift 2
  for _ in $(seq 1 $n); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
  echo "$what did not come up; see $D/log" >&2; bash "$HERE/stop.sh" "$D" >&2 || true; exit 1
}

# -- network: the bridge (its address is the node's), bridged traffic through iptables (Services) --------
ip link add "$BRIDGE" type bridge && ip addr add "$NODE_IP/24" dev "$BRIDGE" && ip link set "$BRIDGE" up
modprobe br_netfilter 2>/dev/null || true
sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
cat > "$D/cni/10-factory.conflist" <<CNI
{"cniVersion": "0.4.0", "name": "factory", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$D/cni/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
CNI

# -- the pause image (every pod's sandbox), from Kubernetes' own pause.c --------------------------------
SRC=$(ls -d "${KUBE_APISERVER_WORKDIR:-$HOME/.cache/kube-apiserver-debian}"/src/kubernetes-1.*/ | head -1)
PAUSE=localhost/factory/pause:1.20.2
if [ ! -s "$CACHE/pause.tar" ]; then
  mkdir -p "$CACHE/pause-build"
  gcc -Os -static -o "$CACHE/pause-build/pause" "$SRC/build/pause/linux/pause.c"
  printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' > "$CACHE/pause-build/Dockerfile"
  podman build --quiet -t "$PAUSE" "$CACHE/pause-build" >/dev/null
  podman save --format docker-archive -o "$CACHE/pause.tar" "$PAUSE" >/dev/null
fi

# -- containerd (its own socket and state; the image store persists in CACHE) ---------------------------
# Without CAP_SYS_RESOURCE (a node inside another container) no process may lower its OOM score, which the
# kubelet asks of every pod's sandbox: runc then runs through runc-oom-floor, which raises those scores.
RUNC=runc
if ! (echo -999 > /proc/self/oom_score_adj) 2>/dev/null; then RUNC=$HERE/runc-oom-floor; fi
cat > "$D/containerd.toml" <<TOML
version = 2
root = "$CACHE/containerd"
state = "$D/containerd"
[grpc]
  address = "$D/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$RUNC"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$D/cni"
TOML
containerd --config "$D/containerd.toml" > "$D/log/containerd.log" 2>&1 & started
CTR=(ctr --address "$D/containerd.sock" -n k8s.io)
wait_for 30 containerd "${CTR[@]}" version
# Import each archive whose image containerd lacks, or that is newer than the last import.
for tar in "$CACHE/pause.tar" "$IMAGES"/*.tar; do
  [ -f "$tar" ] || continue
  stamp="$CACHE/containerd/imported-$(basename "$tar").stamp"
  if [ ! -f "$stamp" ] || [ "$tar" -nt "$stamp" ]; then
    "${CTR[@]}" images import --all-platforms "$tar" >&2 && touch "$stamp"
  fi
done

# -- etcd and the API server ----------------------------------------------------------------------------
EC=$(port); EP=$(port); AP=$(port); KP=$(port); PH=$(port); PM=$(port)
openssl genrsa -out "$D/sa.key" 2048 2>/dev/null; openssl rsa -in "$D/sa.key" -pubout -out "$D/sa.pub" 2>/dev/null
TOKEN=$("$PYTHON" -c 'import secrets; print(secrets.token_hex(16))')
echo "$TOKEN,admin,1,\"system:masters\"" > "$D/tokens.csv"
etcd --name node --data-dir "$D/etcd" --listen-client-urls http://127.0.0.1:$EC --advertise-client-urls http://127.0.0.1:$EC \
  --listen-peer-urls http://127.0.0.1:$EP --initial-advertise-peer-urls http://127.0.0.1:$EP \
  --initial-cluster node=http://127.0.0.1:$EP > "$D/log/etcd.log" 2>&1 & started
# PodSecurityPolicy admission stands in for Pod Security admission, which 1.20 lacks (addons.py maps the
# namespace's pod-security.kubernetes.io/enforce label to a PodSecurityPolicy, psp.yaml).
"$B/kube-apiserver" --etcd-servers=http://127.0.0.1:$EC --bind-address=$NODE_IP --secure-port=$AP \
  --advertise-address=$NODE_IP --cert-dir="$D/certs" --token-auth-file="$D/tokens.csv" --authorization-mode=Node,RBAC \
  --kubelet-preferred-address-types=InternalIP \
  --enable-admission-plugins=PodSecurityPolicy --allow-privileged=true \
  --service-account-key-file="$D/sa.pub" --service-account-signing-key-file="$D/sa.key" \
  --service-account-issuer=https://kubernetes.default.svc --service-cluster-ip-range=$SERVICE_CIDR --insecure-port=0 \
  > "$D/log/apiserver.log" 2>&1 & started
cat > "$D/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: node, cluster: {server: "https://$NODE_IP:$AP", certificate-authority: "$D/certs/apiserver.crt"}}]
users: [{name: admin, user: {token: $TOKEN}}]
contexts: [{name: node, context: {cluster: node, user: admin, namespace: default}}]
current-context: node
KC
wait_for 60 kube-apiserver sh -c "curl -sfk -H 'Authorization: Bearer $TOKEN' https://$NODE_IP:$AP/readyz | grep -qx ok"

# -- control plane: controllers (service-account tokens signed with the API server's key) and scheduler --
"$B/kube-controller-manager" --kubeconfig="$D/kubeconfig" --authentication-kubeconfig="$D/kubeconfig" \
  --authorization-kubeconfig="$D/kubeconfig" --service-account-private-key-file="$D/sa.key" \
  --root-ca-file="$D/certs/apiserver.crt" --cluster-cidr=$POD_CIDR --allocate-node-cidrs=false --port=0 \
  --secure-port=0 --leader-elect=false --use-service-account-credentials=true --controllers='*,-nodeipam' > "$D/log/controller-manager.log" 2>&1 & started
"$B/kube-scheduler" --kubeconfig="$D/kubeconfig" --authentication-kubeconfig="$D/kubeconfig" \
  --authorization-kubeconfig="$D/kubeconfig" --port=0 --secure-port=0 --leader-elect=false \
  > "$D/log/scheduler.log" 2>&1 & started

# -- kubelet and kube-proxy ------------------------------------------------------------------------------
: > "$D/resolv.conf"   # pods resolve only cluster names: nothing upstream
cat > "$D/kubelet.yaml" <<KL
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KP
readOnlyPort: 0
healthzPort: 0
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
clusterDNS: [$NODE_IP]
clusterDomain: cluster.local
resolvConf: $D/resolv.conf
failSwapOn: false
# The machine is shared: never evict for its disk, never collect the imported images.
evictionHard: {memory.available: 200Mi, nodefs.available: 1%, imagefs.available: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
KL
"$B/kubelet" --config="$D/kubelet.yaml" --kubeconfig="$D/kubeconfig" --container-runtime=remote \
  --container-runtime-endpoint="unix://$D/containerd.sock" --root-dir="$D/kubelet" --cert-dir="$D/kubelet/pki" \
  --hostname-override=$NODE --node-ip=$NODE_IP --pod-infra-container-image=$PAUSE \
  > "$D/log/kubelet.log" 2>&1 & started
"$B/kube-proxy" --kubeconfig="$D/kubeconfig" --hostname-override=$NODE --cluster-cidr=$POD_CIDR --proxy-mode=iptables \
  --conntrack-max-per-core=0 --healthz-bind-address=127.0.0.1:$PH --metrics-bind-address=127.0.0.1:$PM \
  > "$D/log/kube-proxy.log" 2>&1 & started

# -- add-ons: Pod Security policies, cluster DNS, volumes -------------------------------------------------
cat > "$D/env" <<ENV
NODE=$NODE
NODE_IP=$NODE_IP
POD_CIDR=$POD_CIDR
SERVICE_CIDR=$SERVICE_CIDR
KUBECONFIG=$D/kubeconfig
CONTAINERD_ADDRESS=$D/containerd.sock
ENV
mkdir -p "$D/dns" && : > "$D/dns/hosts"
# --user=root: dnsmasq otherwise drops to an unprivileged user, which cannot read hosts under a private RUNDIR.
dnsmasq --keep-in-foreground --user=root --no-resolv --no-hosts --bind-interfaces --listen-address=$NODE_IP --port=53 \
  --addn-hosts="$D/dns/hosts" --local=/cluster.local/ --domain-needed --local-ttl=1 --pid-file="$D/dnsmasq.pid" \
  --log-facility="$D/log/dnsmasq.log" & started
"$PYTHON" "$HERE/addons.py" "$D" > "$D/log/addons.log" 2>&1 & started
KUBECTL=(env KUBECONFIG="$D/kubeconfig" "${KUBECTL:-$REPO/.venv/bin/kubectl}")
wait_for 60 "node $NODE Ready" sh -c "${KUBECTL[*]} get node $NODE -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
"${KUBECTL[@]}" apply -f "$HERE/psp.yaml" >/dev/null
for i in 0 1 2 3; do  # what a local-path provisioner would hand out: a world-writable folder on the node
  mkdir -p "$D/pv/pv$i" && chmod 0777 "$D/pv/pv$i"
  cat <<PV
apiVersion: v1
kind: PersistentVolume
metadata: {name: node-pv$i}
spec:
  capacity: {storage: 64Gi}
  accessModes: [ReadWriteOnce, ReadWriteMany]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: "$D/pv/pv$i", type: Directory}
---
PV
done | "${KUBECTL[@]}" apply -f - >/dev/null
wait_for 60 "service account of namespace default" "${KUBECTL[@]}" get serviceaccount default -n default
echo "$D/kubeconfig"
