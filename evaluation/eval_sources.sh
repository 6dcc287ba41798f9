#!/bin/sh
# Usage: sh evaluation/eval_sources.sh MODEL QUESTIONS.json REPORT.json [vqa|grounding] [THRESHOLD] [options]
# Answers every question fused and through each mono-source variant (one source shown), scores each view as
# evaluation/eval_qwen.sh does, prints the per-source table and writes REPORT.json and REPORT.png
# (`mars eval sources --help` lists the options). Relative image paths are found as qwen_inference.sh finds them.
set -eu
if [ "$#" -lt 3 ]; then
    echo "usage: sh evaluation/eval_sources.sh MODEL QUESTIONS.json REPORT.json [vqa|grounding] [THRESHOLD] [options]" >&2
    exit 2
fi
abs() { case "$1" in /*) echo "$1" ;; *) echo "$(pwd)/$1" ;; esac; }
model=$1; questions=$(abs "$2"); report=$(abs "$3"); shift 3
[ -e "$model" ] && model=$(abs "$model")
task=""
case "${1:-}" in vqa|grounding) task="--task $1"; shift ;; esac
threshold=""
case "${1:-}" in [0-9]*|.[0-9]*) threshold="--threshold $1"; shift ;; esac
MARS_CALLER_CWD=$(pwd); export MARS_CALLER_CWD
cd "$(dirname "$0")/.."
# shellcheck disable=SC2086
exec python -m mars.per_source "$model" "$questions" --out "$report" $task $threshold "$@"
