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

exec "$PYTHON" -m recipe.dapo.main_dapo \
    algorithm.adv_estimator=mars \
    data.train_files="$TRAIN_FILE" \
    data.val_files="$VAL_FILE" \
    data.max_prompt_length="${MAX_PROMPT_LENGTH:-8192}" \
    data.max_response_length="${MAX_RESPONSE_LENGTH:-8192}" \
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
    actor_rollout_ref.rollout.name="$ENGINE" \
    actor_rollout_ref.rollout.tensor_model_parallel_size="${ROLLOUT_TP:-1}" \
    actor_rollout_ref.rollout.gpu_memory_utilization=0.6 \
    +actor_rollout_ref.rollout.limit_images="$LIMIT_IMAGES" \
    trainer.project_name="${PROJECT_NAME:-mars}" \
    trainer.experiment_name="${EXPERIMENT_NAME:-dapo_mars_qwen3_vl_4b_$DATASET}" \
    trainer.logger="$LOGGER" \
    trainer.n_gpus_per_node="$N_GPUS" \
    trainer.nnodes="$NNODES" \
    trainer.save_freq=20 \
    trainer.test_freq=5 \
    trainer.total_epochs=15 \
    "$@"
