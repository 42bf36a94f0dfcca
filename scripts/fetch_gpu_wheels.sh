#!/usr/bin/env bash
# Fills .whl/ with the wheels that the workplace's GPU machine (the device tool's nvidia-h100-x1
# and nvidia-h200) lacks for metric_runner, hydra_plugins and the tests. That machine has no
# network; its python3 (3.12, /opt/torch/.venv) already holds torch 2.11, torchvision, numpy,
# scipy, scikit-learn, pillow, pyyaml, tqdm, matplotlib, tensorboard, pandas, pytest,
# pytest-xdist, packaging, typing-extensions, MarkupSafe, cloudpickle (the package list in
# /work/.library/device/KINDS.md). Run it HERE, where the package registries answer:
#
#   bash scripts/fetch_gpu_wheels.sh           # refill .whl/ (about 24 MB, 13 wheels)
#   bash scripts/fetch_gpu_wheels.sh --check   # and install them into a scratch folder for a
#                                              # local python3.12 and import them
#
# then `carry: [".whl"]` in the device call (scripts/gpu_check.sh's header has the whole call).
# Each version is the one this repository's .venv has, i.e. the one the tests pass with here.
set -euo pipefail
export PIP_ROOT_USER_ACTION=ignore
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
WHEELS=.whl
# Runtime (setup.cfg install_requires) and the dev extra, with what they need in turn
# (Requires-Dist), less what the GPU image already has.
NEEDED=(
    hydra-core omegaconf antlr4-python3-runtime
    faiss-cpu
    record-keeper
    optuna alembic SQLAlchemy Mako colorlog
    pytorch-metric-learning
    hydra-submitit-launcher submitit
)
# antlr4-python3-runtime 4.9.3 (the version omegaconf 2.3 pins) exists only as a source
# archive; it is pure Python, so a wheel built here installs anywhere.
BUILT_FROM_SOURCE=antlr4-python3-runtime
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64
    manylinux2014_x86_64 manylinux1_x86_64)

installed_version() {  # the version of distribution $1 in this repository's .venv
    "$PYTHON" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$1"
}

quiet_pip() {  # pip without the notes about this machine's missing local indexes
    "$PYTHON" -m pip "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

fetch() {
    rm -rf "$WHEELS"  # one version of each: two of one package stop the install there
    mkdir -p "$WHEELS"
    local platform_flags=() name pin
    for platform in "${PLATFORMS[@]}"; do platform_flags+=(--platform "$platform"); done
    for name in "${NEEDED[@]}"; do
        pin="$name==$(installed_version "$name")"
        echo "$pin"
        if [ "$name" = "$BUILT_FROM_SOURCE" ]; then
            quiet_pip wheel -q --no-deps --no-binary "$name" -w "$WHEELS" "$pin"
        else
            quiet_pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
                --implementation cp "${platform_flags[@]}" -d "$WHEELS" "$pin"
        fi
    done
    local count
    count=$(find "$WHEELS" -type f -name '*.whl' | wc -l)
    if [ "$count" -ne "${#NEEDED[@]}" ]; then
        echo "expected ${#NEEDED[@]} wheels in $WHEELS, found $count" >&2
        exit 1
    fi
    du -sh "$WHEELS"
}

find_python312() {
    local candidate
    for candidate in python3.12 "$HOME/.pyenv/versions/"3.12*/bin/python3.12; do
        if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
            command -v "$candidate" || echo "$candidate"
            return
        fi
    done
    return 1
}

check() {
    # The same install as scripts/gpu_check.sh's, for a local python3.12. The GPU image's own
    # packages that these wheels import (numpy, pyyaml, ...) go into a second folder, as
    # stand-ins; torch is too large to fetch for this, so the imports that need it are skipped.
    local python312 site=/tmp/gpu_wheels_check image=/tmp/gpu_wheels_check_image
    python312=$(find_python312) || { echo "no python3.12 here: --check skipped" >&2; return; }
    rm -rf "$site" "$image"
    "$python312" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" "$WHEELS"/*.whl
    quiet_pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$image/wheels" \
        numpy pyyaml packaging typing-extensions markupsafe tqdm cloudpickle
    "$python312" -m pip install -q --no-index --no-deps --no-compile --target "$image" \
        "$image"/wheels/*.whl
    PYTHONPATH="$site:$image:$PWD" "$python312" - <<'EOF'
import importlib

for name in ("hydra", "omegaconf", "antlr4", "faiss", "optuna", "alembic", "sqlalchemy",
             "mako", "colorlog", "submitit", "hydra_plugins.hydra_submitit_launcher",
             "hydra_plugins.metric_runner_sweeper"):
    module = importlib.import_module(name)
    print(f"{name:40} {getattr(module, '__version__', '')}")
for name in ("record_keeper", "pytorch_metric_learning.losses"):
    try:
        importlib.import_module(name)
        print(f"{name:40} imported")
    except ModuleNotFoundError as missing:
        print(f"{name:40} not checked: needs {missing.name}, not fetched here")
import faiss
import numpy

index = faiss.IndexFlatL2(2)
index.add(numpy.array([[0, 0], [3, 4]], dtype="float32"))
distances, _ = index.search(numpy.array([[0, 0]], dtype="float32"), 2)
assert distances.tolist() == [[0.0, 25.0]], distances
print("faiss search                             ok")
EOF
}

fetch
if [ "${1:-}" = "--check" ]; then
    check
fi
