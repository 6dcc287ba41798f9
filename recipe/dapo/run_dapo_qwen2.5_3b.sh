#!/bin/sh
# DAPO + MARS on Qwen2.5-VL-3B, one node with 8 GPUs: the reference setting (SPEC §2; mars/config/preset/dapo.yaml:
# clip 0.2/0.28, clip_ratio_c 10, token-mean, no KL, overlong shaping with a 4096-token buffer and penalty 1.0,
# dynamic sampling on seq_reward with at most 10 generation batches, 12 rollouts, 16 prompts per step, lr 1e-6 with
# 10 warm-up steps, weight decay 0.1). Groups are kept while their MARS statistics carry signal, anchors attached.
#
#   MODEL_PATH=... DATA_DIR=... sh recipe/dapo/run_dapo_qwen2.5_3b.sh vllm llvip utils/reward_score/grounding.py 2
#
# The overlong penalty starts MAX_RESPONSE_LENGTH - 4096 tokens into a response, so the length limit is 8192 here.
# Arguments, environment and defaults: examples/common.sh. Extra arguments are Hydra overrides (`--cfg job` prints
# the composed config and starts nothing).
set -eu
. "$(dirname "$0")/../../examples/common.sh"
mars_parse "$@"
shift 4

MAX_RESPONSE_LENGTH=${MAX_RESPONSE_LENGTH:-8192}
mars_run recipe.dapo.main_dapo dapo_mars_qwen2_5_vl_3b \
    "$@"
