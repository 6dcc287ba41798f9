#!/bin/sh
# GRPO + MARS on Qwen2.5-VL-7B, one node with 8 GPUs; the algorithm settings are the reference's (SPEC §2,
# mars/config/preset/grpo.yaml), the rollout runs with tensor parallelism 2.
#
#   MODEL_PATH=... DATA_DIR=... sh examples/grpo_trainer/run_qwen2_5_vl-7b.sh vllm llvip utils/reward_score/grounding.py 2
#
# Arguments, environment and defaults: examples/common.sh. Extra arguments are Hydra overrides.
set -eu
. "$(dirname "$0")/../common.sh"
mars_parse "$@"
shift 4

ROLLOUT_TP=${ROLLOUT_TP:-2}  # tensor parallelism of the rollout engine
mars_run mars.main_ppo grpo_mars_qwen2_5_vl_7b \
    actor_rollout_ref.ref.fsdp_config.param_offload=True \
    "$@"
