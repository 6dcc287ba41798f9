#!/bin/sh
# GRPO + MARS on Qwen2.5-VL-3B, one node with 8 GPUs: the reference setting (SPEC §2; mars/config/preset/grpo.yaml:
# lr 1e-6, 14 rollouts at temperature 1.0 / top_p 0.9, KL loss low_var_kl 0.001, token-mean, clip 0.2,
# 128 prompts per step, mini-batch 32). Anchors: one greedy answer per source, in the same generation request.
#
#   MODEL_PATH=... DATA_DIR=... sh examples/grpo_trainer/run_qwen2_5_vl-3b.sh vllm llvip utils/reward_score/grounding.py 2
#
# Arguments, environment and defaults: examples/common.sh. Extra arguments are Hydra overrides (`--cfg job` prints
# the composed config and starts nothing).
set -eu
. "$(dirname "$0")/../common.sh"
mars_parse "$@"
shift 4

mars_run mars.main_ppo grpo_mars_qwen2_5_vl_3b \
    actor_rollout_ref.ref.fsdp_config.param_offload=True \
    "$@"
