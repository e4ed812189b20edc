#!/usr/bin/env bash
# README's first command, as a new user runs it: a brand-new virtual environment, `pip install .`
# with NO extras, then the main job on the built-in sample, run to completion in an empty folder.
# A module the package imports at run time but does not declare fails here (the test venv installs
# the extras and would hide it). Fails unless the search exports best/model.keras.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/segsearch-fresh.XXXXXX")"
trap 'rm -rf "$work"' EXIT
PYTHON="${PYTHON:-python3}"

"$PYTHON" -m venv "$work/venv"
# shellcheck disable=SC1091
source "$work/venv/bin/activate"
python -m pip install -q "$repo"
# The space files from the INSTALLED package (spaces/ in the clone is a link to segsearch/spaces/):
# a wheel that lacks them fails here.
shipped="$(python -c 'import importlib.resources as r; print(r.files("segsearch") / "spaces")')"
test -f "$shipped/resunet.yaml" || {
    echo "fresh_install.sh: FAILED: the installed package ships no spaces/resunet.yaml ($shipped)" >&2
    exit 1
}
mkdir "$work/run" && cp -r "$shipped" "$work/run/spaces"
cd "$work/run"
start=$SECONDS
segsearch run spaces/resunet.yaml
test -f studies/resunet/best/model.keras || {
    echo "fresh_install.sh: FAILED: the main job exported no studies/resunet/best/model.keras" >&2
    exit 1
}
echo "fresh_install.sh: README's first command passed in a new venv with no extras ($((SECONDS - start)) s)"
