#!/bin/sh
# DAPO + MARS on Qwen3-VL-4B-Instruct, one node with 8 GPUs (reference settings, mars/config/preset/dapo.yaml).
# Qwen3-VL writes box coordinates relative to 0..1000: convert grounding data with
# `mars data convert to-parquet ... --coord-format qwen3_vl` so that the reward converts them (docs/data_formats.md).
#
#   MODEL_PATH=... DATA_DIR=... sh recipe/dapo/run_dapo_qwen3_vl_4b.sh vllm llvip utils/reward_score/grounding.py 2
#
# Arguments, environment and defaults: examples/common.sh. Extra arguments are Hydra overrides.
set -eu
. "$(dirname "$0")/../../examples/common.sh"
mars_parse "$@"
shift 4

MAX_RESPONSE_LENGTH=${MAX_RESPONSE_LENGTH:-8192}
mars_run recipe.dapo.main_dapo dapo_mars_qwen3_vl_4b \
    "$@"
