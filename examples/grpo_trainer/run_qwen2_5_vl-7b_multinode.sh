#!/bin/sh
# GRPO + MARS on Qwen2.5-VL-7B over several nodes of a Ray cluster (NNODES nodes x N_GPUS GPUs).
#
# 1. On every node: the same repository checkout, `pip install -e ".[vllm]"`, the model and the data at the same
#    paths (or on a shared file system). 2. Start Ray: on the head node `ray start --head --port=6379`, on each
#    other node `ray start --address=HEAD_IP:6379`; `ray status` must list NNODES x N_GPUS GPUs.
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

exec "$PYTHON" -m mars.main_ppo \
    algorithm.adv_estimator=mars \
    data.train_files="$TRAIN_FILE" \
    data.val_files="$VAL_FILE" \
    data.max_prompt_length="${MAX_PROMPT_LENGTH:-8192}" \
    data.max_response_length="${MAX_RESPONSE_LENGTH:-2048}" \
    data.filter_overlong_prompts=True \
    data.truncation=error \
    ++mars.expected_num_images="$NUM_IMAGE" \
    reward.custom_reward_function.path="$REWARD_PATH" \
    reward.custom_reward_function.name=compute_score \
    actor_rollout_ref.model.path="$MODEL_PATH" \
    actor_rollout_ref.model.use_remove_padding=True \
    actor_rollout_ref.model.enable_gradient_checkpointing=True \
    actor_rollout_ref.actor.fsdp_config.param_offload=False \
    actor_rollout_ref.actor.fsdp_config.optimizer_offload=False \
    actor_rollout_ref.ref.fsdp_config.param_offload=True \
    actor_rollout_ref.rollout.name="$ENGINE" \
    actor_rollout_ref.rollout.tensor_model_parallel_size="${ROLLOUT_TP:-2}" \
    actor_rollout_ref.rollout.gpu_memory_utilization=0.6 \
    +actor_rollout_ref.rollout.limit_images="$LIMIT_IMAGES" \
    trainer.project_name="${PROJECT_NAME:-mars}" \
    trainer.experiment_name="${EXPERIMENT_NAME:-grpo_mars_qwen2_5_vl_7b_multinode_$DATASET}" \
    trainer.logger="$LOGGER" \
    trainer.n_gpus_per_node="$N_GPUS" \
    trainer.nnodes="$NNODES" \
    trainer.save_freq=20 \
    trainer.test_freq=5 \
    trainer.total_epochs=15 \
    "$@"
