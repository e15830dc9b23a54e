#!/usr/bin/env bash
# bench/encoder/install.sh — install the encoder peers' Python stack into bench/.venv (idempotent).
#
# PyPI has no CPU-only torch for Linux x86_64: its torch wheel is the CUDA build, whose default
# requirements pull 2.46 GB of nvidia-*/triton wheels on top of the 0.54 GB torch wheel (3.0 GB in all).
# `import torch` fails without CUDA libraries (libtorch_cuda.so etc. link them: DT_NEEDED), but with just
# those present torch runs and trains on the CPU. So we install torch --no-deps plus exactly the nvidia
# packages providing the linked libraries (not triton, cusolver, nvtx, cccl, cuda-bindings, the
# cuda-toolkit metapackage): 0.54 + 1.92 = 2.46 GB of wheels instead of 3.0 GB; torch + nvidia ~4 GB on
# disk (measured with torch 2.15.0, Python 3.11, x86_64). Every package that
# requires torch (accelerate, sentence-transformers, setfit) is also installed --no-deps, because pip
# re-resolves an installed torch's requirements and would pull the rest of the CUDA stack. Their other
# requirements are in requirements.txt. `pip check` will list torch's missing CUDA extras: expected.
#
# usage: bench/encoder/install.sh   (uses $BENCH_PY's pip, default bench/.venv)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv_py=${BENCH_PY:-$here/../.venv/bin/python}
if [ ! -x "$venv_py" ]; then
  python3 -m venv "$here/../.venv"
  venv_py="$here/../.venv/bin/python"
  "$venv_py" -m pip install -q --upgrade pip
fi
pip=("$venv_py" -m pip install -q --disable-pip-version-check)

"${pip[@]}" -r "$here/requirements.txt"
# torch 2.15.0 (cu132 build, used on the CPU) and the CUDA libraries that libtorch*.so link at load time.
"${pip[@]}" --no-deps \
  torch==2.15.0 \
  nvidia-cuda-runtime==13.2.86 \
  nvidia-cublas==13.4.1.3 \
  nvidia-cuda-nvrtc==13.2.86 \
  nvidia-cuda-cupti==13.2.86 \
  nvidia-cufft==12.2.0.57 \
  nvidia-cufile==1.17.1.22 \
  nvidia-cusparse==12.7.10.12 \
  nvidia-nvjitlink==13.5.37 \
  nvidia-cusparselt-cu13==0.8.1 \
  nvidia-cudnn-cu13==9.26.0.51 \
  nvidia-nccl-cu13==2.30.7 \
  nvidia-nvshmem-cu13==3.7.2
"${pip[@]}" --no-deps accelerate==1.15.0 sentence-transformers==6.2.0 setfit==1.2.0

HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1 "$venv_py" - <<'PY'
import torch
torch.set_num_threads(1)
m = torch.nn.Linear(8, 2)
loss = m(torch.randn(4, 8)).logsumexp(-1).sum()
loss.backward()
assert m.weight.grad is not None
import transformers, sentence_transformers, setfit, sklearn  # noqa: F401
import sys
print(f"encoder install ok: torch {torch.__version__} transformers {transformers.__version__} "
      f"sentence-transformers {sentence_transformers.__version__} setfit {setfit.__version__}", file=sys.stderr)
PY
