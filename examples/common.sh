# Sourced by the MARS launch scripts (POSIX sh). Every script takes the reference command line:
#
#   sh SCRIPT ENGINE DATASET REWARD_PATH NUM_IMAGE [HYDRA_OVERRIDES ...]
#
#   ENGINE       vllm | sglang (the rollout engine)
#   DATASET      a folder under $DATA_DIR holding train.parquet and val.parquet (mars data convert/synth)
#   REWARD_PATH  a verl reward file, e.g. utils/reward_score/grounding.py or utils/reward_score/vqa.py
#   NUM_IMAGE    images per sample, checked against the data before training (`any` for mixed counts);
#                the sources of each sample are read from the data itself
#   anything after them is passed on as Hydra overrides; `--cfg job` prints the config and starts nothing.
#
# Environment: MODEL_PATH and DATA_DIR are required. Optional: TRAIN_FILE, VAL_FILE (instead of DATA_DIR/DATASET),
# N_GPUS (per node, 8), NNODES (1), ROLLOUT_TP, MAX_PROMPT_LENGTH, MAX_RESPONSE_LENGTH, PROJECT_NAME,
# EXPERIMENT_NAME, LOGGER, MAX_IMAGES (vLLM's image limit when NUM_IMAGE is `any`, 6), PYTHON (python3).

MARS_ROOT=$(cd "$(dirname "$0")" && while [ ! -f pyproject.toml ] && [ "$(pwd)" != / ]; do cd ..; done && pwd)

mars_fail() {
    echo "$(basename "$0"): $*" >&2
    exit 2
}

mars_usage() {
    echo "usage: sh $0 ENGINE DATASET REWARD_PATH NUM_IMAGE [HYDRA_OVERRIDES ...]" >&2
    echo "  e.g. sh $0 vllm llvip utils/reward_score/grounding.py 2" >&2
    echo "  needs MODEL_PATH and DATA_DIR in the environment (see examples/README.md)" >&2
    exit 2
}

mars_abspath() {
    case "$1" in
        /*) echo "$1" ;;
        *) echo "$(pwd)/$1" ;;
    esac
}

# mars_parse ENGINE DATASET REWARD_PATH NUM_IMAGE: checks the arguments and the environment, then sets
# ENGINE DATASET REWARD_PATH NUM_IMAGE LIMIT_IMAGES MODEL_PATH TRAIN_FILE VAL_FILE N_GPUS NNODES LOGGER PYTHON.
mars_parse() {
    [ "$#" -ge 4 ] || mars_usage
    ENGINE=$1 DATASET=$2 REWARD_PATH=$3 NUM_IMAGE=$4

    case "$ENGINE" in
        vllm | sglang) ;;
        *) mars_fail "ENGINE must be vllm or sglang, got '$ENGINE'" ;;
    esac

    case "$NUM_IMAGE" in
        any) LIMIT_IMAGES=${MAX_IMAGES:-6} ;;
        '' | *[!0-9]* | 0) mars_fail "NUM_IMAGE must be the number of images per sample (1, 2, 6, ...) or 'any', got '$NUM_IMAGE'" ;;
        *) LIMIT_IMAGES=$NUM_IMAGE ;;
    esac

    # verl loads the reward file by path inside Ray workers: make it absolute (relative to here or to the repo)
    if [ -f "$REWARD_PATH" ]; then
        REWARD_PATH=$(mars_abspath "$REWARD_PATH")
    elif [ -f "$MARS_ROOT/$REWARD_PATH" ]; then
        REWARD_PATH=$MARS_ROOT/$REWARD_PATH
    else
        mars_fail "reward file '$REWARD_PATH' not found (try utils/reward_score/grounding.py or utils/reward_score/vqa.py)"
    fi

    [ -n "${MODEL_PATH:-}" ] || mars_fail "MODEL_PATH is not set: export MODEL_PATH=/path/to/model (a local Hugging Face folder, e.g. your CoT-SFT checkpoint, or a hub id such as Qwen/Qwen2.5-VL-3B-Instruct)"
    case "$MODEL_PATH" in
        /* | ./* | ../*) [ -d "$MODEL_PATH" ] || mars_fail "MODEL_PATH=$MODEL_PATH is not a directory" ;;
    esac
    if [ -d "$MODEL_PATH" ]; then MODEL_PATH=$(mars_abspath "$MODEL_PATH"); fi

    if [ -z "${TRAIN_FILE:-}" ] || [ -z "${VAL_FILE:-}" ]; then
        [ -n "${DATA_DIR:-}" ] || mars_fail "DATA_DIR is not set: export DATA_DIR=/path/to/data, the folder holding $DATASET/train.parquet and $DATASET/val.parquet (or set TRAIN_FILE and VAL_FILE)"
    fi
    TRAIN_FILE=${TRAIN_FILE:-$DATA_DIR/$DATASET/train.parquet}
    VAL_FILE=${VAL_FILE:-$DATA_DIR/$DATASET/val.parquet}
    for file in "$TRAIN_FILE" "$VAL_FILE"; do
        [ -f "$file" ] || mars_fail "$file not found: make it with \`mars data convert to-parquet\` (or \`mars data synth\`) and check it with \`mars data check\`"
    done
    TRAIN_FILE=$(mars_abspath "$TRAIN_FILE")
    VAL_FILE=$(mars_abspath "$VAL_FILE")

    N_GPUS=${N_GPUS:-8}
    NNODES=${NNODES:-1}
    LOGGER=${LOGGER:-'["console","tensorboard"]'}
    PYTHON=${PYTHON:-python3}
    # `python -m recipe.dapo.main_dapo` imports from the repository root, wherever the script is started from
    PYTHONPATH=$MARS_ROOT${PYTHONPATH:+:$PYTHONPATH}
    export PYTHONPATH
}

# mars_run MODULE EXPERIMENT [OVERRIDES ...]: start MODULE (mars.main_ppo or recipe.dapo.main_dapo) with the settings
# every launch script shares, then OVERRIDES (the script's own, then the user's). A script sets ROLLOUT_TP and
# MAX_RESPONSE_LENGTH defaults before calling it; EXPERIMENT names the run unless EXPERIMENT_NAME is set.
mars_run() {
    module=$1 experiment=$2
    shift 2
    exec "$PYTHON" -m "$module" \
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
        actor_rollout_ref.rollout.name="$ENGINE" \
        actor_rollout_ref.rollout.gpu_memory_utilization=0.6 \
        +actor_rollout_ref.rollout.limit_images="$LIMIT_IMAGES" \
        trainer.project_name="${PROJECT_NAME:-mars}" \
        trainer.logger="$LOGGER" \
        trainer.n_gpus_per_node="$N_GPUS" \
        trainer.nnodes="$NNODES" \
        trainer.save_freq=20 \
        trainer.test_freq=5 \
        trainer.total_epochs=15 \
        actor_rollout_ref.rollout.tensor_model_parallel_size="${ROLLOUT_TP:-1}" \
        trainer.experiment_name="${EXPERIMENT_NAME:-${experiment}_$DATASET}" \
        "$@"
}
