#!/bin/bash
# gpu-node.sh - make a node look like a cloud GPU node (`make cluster-up` runs it for ours; for kind:
# the NVIDIA device plugin's taint, the node label, and the extended resource nvidia.com/gpu (in
# node status, as Kubernetes documents for extended resources). No GPU is behind it: the
# train Job schedules for real, and XGBoost's device=auto falls back to CPU and logs it.
#   kind create cluster --config infra/kind/cluster.yaml && infra/cluster/gpu-node.sh
set -euo pipefail
NODE=${1:-$(kubectl get nodes -l nvidia.com/gpu.present=true -o jsonpath='{.items[0].metadata.name}')}
[ -n "$NODE" ] || { echo "gpu-node.sh: no node labelled nvidia.com/gpu.present=true (see infra/kind/cluster.yaml)" >&2; exit 1; }
kubectl label node "$NODE" nvidia.com/gpu.present=true --overwrite >/dev/null
kubectl taint node "$NODE" nvidia.com/gpu=present:NoSchedule --overwrite >/dev/null
kubectl patch node "$NODE" --subresource=status --type=json \
  -p '[{"op":"add","path":"/status/capacity/nvidia.com~1gpu","value":"1"}]' >/dev/null
echo "$NODE: labelled, tainted nvidia.com/gpu:NoSchedule, advertises nvidia.com/gpu=1"
