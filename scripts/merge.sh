#!/bin/sh
# Usage: sh scripts/merge.sh CHECKPOINT_DIR [TARGET_DIR]
# A MARS run folder, a global_step_N folder or a verl FSDP checkpoint -> a Hugging Face model (default DIR/huggingface).
set -eu
exec python -m mars.merge "$@"
