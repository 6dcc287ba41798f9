#!/bin/sh
# Usage: sh evaluation/qwen_inference.sh MODEL QUESTIONS.json RESULTS.json [--batch-size N] [--max-new-tokens N] [--backend auto|vllm|hf]
# Answers every question of QUESTIONS.json (the reference question format) and writes RESULTS.json,
# a list of {"content": [generated text], "ground_truth": GT}, which evaluation/eval_qwen.sh scores.
# Image paths inside QUESTIONS.json are relative to the repository root, as in the reference data.
set -eu
if [ "$#" -lt 3 ]; then
    echo "usage: sh evaluation/qwen_inference.sh MODEL QUESTIONS.json RESULTS.json [options]" >&2
    exit 2
fi
abs() { case "$1" in /*) echo "$1" ;; *) echo "$(pwd)/$1" ;; esac; }
model=$1; questions=$(abs "$2"); results=$(abs "$3"); shift 3
[ -e "$model" ] && model=$(abs "$model")
cd "$(dirname "$0")/.."
exec python -m mars.inference "$model" "$questions" "$results" "$@"
