#!/bin/sh
# DAPO + MARS on Qwen2.5-VL-7B, one node with 8 GPUs; the algorithm settings are the reference's (SPEC §2,
# mars/config/preset/dapo.yaml), the rollout runs with tensor parallelism 2.
#
#   MODEL_PATH=... DATA_DIR=... sh recipe/dapo/run_dapo_qwen2.5_7b.sh vllm llvip utils/reward_score/grounding.py 2
#
# Arguments, environment and defaults: examples/common.sh. Extra arguments are Hydra overrides.
set -eu
. "$(dirname "$0")/../../examples/common.sh"
mars_parse "$@"
shift 4

ROLLOUT_TP=${ROLLOUT_TP:-2}  # tensor parallelism of the rollout engine
MAX_RESPONSE_LENGTH=${MAX_RESPONSE_LENGTH:-8192}
mars_run recipe.dapo.main_dapo dapo_mars_qwen2_5_vl_7b \
    "$@"
