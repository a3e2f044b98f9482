#!/bin/bash
# Stop the cluster start.sh started in RUNDIR: its pods' containers and sandboxes first (so no process,
# mount or network namespace outlives it), then every component, kube-proxy's iptables rules and the bridge.
#   bash tests/deploy/cluster/stop.sh RUNDIR
set -uo pipefail
D=$(realpath -m "$1")
[ -f "$D/pids" ] || exit 0
BRIDGE=factory-br0
CTR=(ctr --address "$D/containerd.sock" -n k8s.io)
# kubelet first, so it restarts nothing while the pods go away.
pids=$(cat "$D/pids")
for pid in $pids; do
  case "$(cat /proc/$pid/comm 2>/dev/null)" in kubelet) kill "$pid" 2>/dev/null; wait_pid=$pid;; esac
done
[ -n "${wait_pid:-}" ] && timeout 20 tail --pid="$wait_pid" -f /dev/null
if [ -S "$D/containerd.sock" ]; then
  for task in $("${CTR[@]}" tasks ls -q 2>/dev/null); do "${CTR[@]}" tasks kill -s KILL "$task" >/dev/null 2>&1; done
  sleep 1
  for task in $("${CTR[@]}" tasks ls -q 2>/dev/null); do "${CTR[@]}" tasks delete -f "$task" >/dev/null 2>&1; done
  for c in $("${CTR[@]}" containers ls -q 2>/dev/null); do "${CTR[@]}" containers delete "$c" >/dev/null 2>&1; done
fi
for pid in $pids; do kill "$pid" 2>/dev/null; done
for pid in $pids; do timeout 20 tail --pid="$pid" -f /dev/null 2>/dev/null; done
# What the kubelet and CNI leave: volume mounts under its root, network namespaces of sandboxes.
grep -o " $D/[^ ]*" /proc/self/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
for ns in $(ip netns list 2>/dev/null | awk '/^cni-/{print $1}'); do
  ip netns pids "$ns" 2>/dev/null | grep -q . || ip netns delete "$ns" 2>/dev/null
done
CACHE=$(realpath -m "${FACTORY_CLUSTER_CACHE:-$HOME/.cache/factory-cluster}")
[ -x "$CACHE/bin/kube-proxy" ] && "$CACHE/bin/kube-proxy" --cleanup >/dev/null 2>&1
ip link delete "$BRIDGE" 2>/dev/null
rm -f "$D/pids"
