#!/bin/sh
# GRPO + MARS on Qwen3-VL-4B-Instruct, one node with 8 GPUs (reference settings, mars/config/preset/grpo.yaml).
# Qwen3-VL writes box coordinates relative to 0..1000: convert grounding data with
# `mars data convert to-parquet ... --coord-format qwen3_vl` so that the reward converts them (docs/data_formats.md).
#
#   MODEL_PATH=... DATA_DIR=... sh examples/grpo_trainer/run_qwen3_vl-4b.sh vllm llvip utils/reward_score/grounding.py 2
#
# Arguments, environment and defaults: examples/common.sh. Extra arguments are Hydra overrides.
set -eu
. "$(dirname "$0")/../common.sh"
mars_parse "$@"
shift 4

mars_run mars.main_ppo grpo_mars_qwen3_vl_4b \
    actor_rollout_ref.ref.fsdp_config.param_offload=True \
    "$@"
