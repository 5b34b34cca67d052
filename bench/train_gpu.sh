#!/usr/bin/env bash
# GPT-J 6B fine-tuning on one GPU: overton's full fine-tune and LoRA against transformers' Trainer on the same
# model (random weights from GPT-J 6B's config), data, batch and precision; tokens/s, MFU, peak memory against
# the dry run. Results: bench/results/train_gpu.json. Method and figures: bench/README.md.
#
#   bench/train_gpu.sh            on a GPU (H100 or H200; about 5 minutes)
#   bench/train_gpu.sh --smoke    the same steps on the CPU with a 2-layer GPT-J (under 2 minutes)
#
# Each run is its own process (fresh GPU memory statistics; a run that fails or runs out of time is reported
# as such and the others still run). PYTHON overrides the interpreter (default .venv/bin/python).
set -uo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
mode=() limit=300
case "${1:-}" in
    "") ;;
    --smoke) mode=(--smoke) limit=90 ;;
    *) echo "usage: bench/train_gpu.sh [--smoke]" >&2; exit 2 ;;
esac
started=$SECONDS
work=$(mktemp -d "${TMPDIR:-/tmp}/overton-train-gpu-XXXXXX")
trap 'rm -rf "$work"' EXIT
"$python" bench/train_gpu.py prepare "$work" "${mode[@]}" || exit 1
for name in overton-full overton-lora trainer; do
    echo "== $name"
    timeout --kill-after=15 "$limit" "$python" bench/train_gpu.py run "$work" "$name" "${mode[@]}"
    echo $? > "$work/$name.status"
done
echo "=="
"$python" bench/train_gpu.py report "$work" "${mode[@]}" --seconds $((SECONDS - started))
