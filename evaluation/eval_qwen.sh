#!/bin/sh
# Usage: sh evaluation/eval_qwen.sh RESULTS.json grounding|vqa THRESHOLD [--coords ... --image-size W H]
# Prints the report table and writes RESULTS.report.json beside the results file.
set -eu
if [ "$#" -lt 2 ]; then
    echo "usage: sh evaluation/eval_qwen.sh RESULTS.json grounding|vqa [THRESHOLD] [options]" >&2
    exit 2
fi
# Resolve the results path before changing directory, so relative paths keep working from any cwd.
results=$1
shift
case "$results" in
    /*) ;;
    *) results="$(pwd)/$results" ;;
esac
cd "$(dirname "$0")/.."
exec python evaluation/eval_qwen.py "$results" "$@"
