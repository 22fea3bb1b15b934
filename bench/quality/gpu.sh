#!/usr/bin/env bash
# The training experiment on the GPU machine (one H200, no network), run from the repository root there:
#   bash bench/quality/gpu.sh [STAGE ...]      default: data train eval report
# Wheels are installed from /tmp/gp (the vLLM bundle parts, see the GPU notes) and .gpu/extra, once.
# The corpus files are read from .gpu/quality (or $QUALITY_CORPUS). Progress goes to /tmp/quality/pipeline.log;
# /tmp/quality/DONE (or FAILED) appears at the end. Results: /tmp/quality/out/quality.json and the models under
# /tmp/quality/models/<arm> (Hugging Face folders), kept for other evaluators while the machine stays up.
set -uo pipefail
cd "$(dirname "$0")/../.."
work=/tmp/quality
mkdir -p "$work"
exec >>"$work/pipeline.log" 2>&1
rm -f "$work/DONE" "$work/FAILED"
if [ ! -d /tmp/site/vllm ]; then
  echo "[$(date +%T)] installing wheels"
  mkdir -p /tmp/w && cat /tmp/gp/part* | tar xf - -C /tmp/w || { touch "$work/FAILED"; exit 1; }
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    /tmp/w/*.whl /tmp/gx/*.whl || { touch "$work/FAILED"; exit 1; }
fi
export PYTHONPATH="$PWD:/tmp/site" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
  VLLM_NO_USAGE_STATS=1 VLLM_USE_FLASHINFER_SAMPLER=0 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 \
  NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
corpus=${QUALITY_CORPUS:-/tmp/gq}
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(data train eval report)
for stage in "${stages[@]}"; do
  echo "[$(date +%T)] stage $stage"
  python3 -m bench quality "$stage" --work "$work" --corpus "$corpus" --out "$work/out" ${QUALITY_ARGS:-} \
    || { echo "[$(date +%T)] stage $stage failed"; touch "$work/FAILED"; exit 1; }
done
echo "[$(date +%T)] all stages done"
touch "$work/DONE"
