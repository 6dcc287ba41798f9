#!/bin/sh
# GRPO + MARS on Qwen2.5-VL-7B over several nodes of a Ray cluster (NNODES nodes x N_GPUS GPUs).
#
# 1. On every node: MARS's dependencies (the same image, or `pip install -e ".[vllm]"`), the model, the data and the
#    reward file at the same paths (or on a shared file system). MARS's own code needs no copy: the driver ships its
#    `mars` and `utils` packages to every node through Ray's runtime environment (py_modules) and loads MARS's verl
#    plugin in every Ray process (VERL_USE_EXTERNAL_MODULES). 2. Start Ray: on the head node
#    `ray start --head --port=6379`, on each other node `ray start --address=HEAD_IP:6379`; `ray status` must list
#    NNODES x N_GPUS GPUs.
# 3. On the head node:
#
#   RAY_ADDRESS=auto NNODES=2 MODEL_PATH=... DATA_DIR=... \
#       sh examples/grpo_trainer/run_qwen2_5_vl-7b_multinode.sh vllm llvip utils/reward_score/grounding.py 2
#
# The driver joins the running cluster through RAY_ADDRESS. Arguments and environment: examples/common.sh.
set -eu
. "$(dirname "$0")/../common.sh"
NNODES=${NNODES:-2}
mars_parse "$@"
shift 4
[ -n "${RAY_ADDRESS:-}" ] || mars_fail "RAY_ADDRESS is not set: start the Ray cluster first (ray start --head / ray start --address=HEAD_IP:6379), then export RAY_ADDRESS=auto on the head node"

ROLLOUT_TP=${ROLLOUT_TP:-2}  # tensor parallelism of the rollout engine
mars_run mars.main_ppo grpo_mars_qwen2_5_vl_7b_multinode \
    actor_rollout_ref.ref.fsdp_config.param_offload=True \
    "$@"
