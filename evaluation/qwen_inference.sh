#!/bin/sh
# Usage: sh evaluation/qwen_inference.sh MODEL QUESTIONS.json RESULTS.json [--batch-size N] [--max-new-tokens N] [--backend auto|vllm|hf]
# Answers every question of QUESTIONS.json (the reference question format) and writes RESULTS.json,
# a list of {"content": [generated text], "ground_truth": GT}, which evaluation/eval_qwen.sh scores.
# Relative image paths inside QUESTIONS.json are looked up from the directory you run this from, then the
# repository root (the reference data's data/images/...), then the directory of QUESTIONS.json.
set -eu
if [ "$#" -lt 3 ]; then
    echo "usage: sh evaluation/qwen_inference.sh MODEL QUESTIONS.json RESULTS.json [options]" >&2
    exit 2
fi
abs() { case "$1" in /*) echo "$1" ;; *) echo "$(pwd)/$1" ;; esac; }
model=$1; questions=$(abs "$2"); results=$(abs "$3"); shift 3
[ -e "$model" ] && model=$(abs "$model")
MARS_CALLER_CWD=$(pwd); export MARS_CALLER_CWD
cd "$(dirname "$0")/.."
exec python -m mars.inference "$model" "$questions" "$results" "$@"
