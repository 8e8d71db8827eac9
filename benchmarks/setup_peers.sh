#!/usr/bin/env bash
# Create the benchmark environment .benchenv (git-ignored) with ifscope and the peer libraries.
# The peers never enter ifscope's own dependencies. CPU-only torch, the version ifscope pins.
set -euo pipefail
cd "$(dirname "$0")/.."
ENV=${BENCHENV:-.benchenv}
python3 -m venv "$ENV"
PIP="$ENV/bin/pip"
"$PIP" install --upgrade pip
"$PIP" install torch==2.13.0  # the +cpu build where the index offers one
"$PIP" install -e . scipy scikit-learn
# pydvl[influence] pins numpy<2, so it goes first and the others adapt to its numpy
"$PIP" install "pydvl[influence]" captum dattri traker
# kronfluence's own requirements pull a CUDA torch: install it bare, then what it imports
"$PIP" install --no-deps kronfluence
"$PIP" install accelerate einops einconv opt-einsum safetensors
# the second wide model of benchmarks/peers.py (--data mnist1d): its data set is generated offline by the package
"$PIP" install mnist1d
"$ENV/bin/python" - <<'PY'
import importlib
for name in ("torch", "ifscope", "captum", "pydvl", "kronfluence", "dattri", "trak"):
    try:
        mod = importlib.import_module(name)
        print(f"{name:12s} {getattr(mod, '__version__', '?')}")
    except Exception as exc:  # report, do not fail: the benchmark skips a peer that does not import
        print(f"{name:12s} NOT AVAILABLE ({type(exc).__name__}: {exc})")
PY
