#!/usr/bin/env bash
# Train the mini Kinema4D model on the MuJoCo sim world, on 2 CPU cores, seeded and reproducible:
#   1. sim-world episodes (push + pick-and-place, seeds 0..N-1 per task) -> OUT/episodes/*.npz
#   2. latent cache (tiny-preset VAE + CLIP, once)                      -> OUT/cache/shard_*.safetensors
#   3. flow-matching training from scratch (config/training/mini_cpu.yaml) -> OUT/checkpoints, OUT/logs
#   4. export in the released layout                                    -> OUT/export (kinema4d_ckpt/ + base/)
#   5. with PUBLISH=DIR: the export copied to DIR (e.g. models/kinema4d-mini, the shipped default)
# Before 3 a small AutoencoderKLWan is trained on the episodes' own frames (vae: in the config) ->
# OUT/base. Every stage is resumable: rerunning the script reuses episodes, the VAE and cache
# shards and continues from the newest checkpoint. Use the result with
#   kinema4d simulate --backend kinema4d-mini --checkpoint OUT/export ...
#
# Environment:
#   OUT=runs/mini          output folder
#   STEPS=3000             optimizer steps (config default)
#   EPISODES=24            sim episodes per task
#   THREADS=2              torch / OpenMP threads (1 when other work shares the cores: OpenMP
#                          threads that wait on a busy core make every small op ~10x slower)
#   PUBLISH=DIR            copy the finished export to DIR (replaced as a whole, never half-written)
#   SMOKE=1                a minutes-long check of the whole chain (1 episode per task, 2 steps)
#   EXTRA="--set k=v ..."  more overrides for `kinema4d train`
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/mini}
THREADS=${THREADS:-2}
CONFIG=config/training/mini_cpu.yaml

export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS NUMBA_NUM_THREADS=$THREADS
export PYTHONHASHSEED=0 MUJOCO_GL=${MUJOCO_GL:-egl}

ARGS=(--set "train.output_dir=$OUT" --set "train.torch_threads=$THREADS")
[[ -n "${STEPS:-}" ]] && ARGS+=(--set "train.steps=$STEPS")
[[ -n "${EPISODES:-}" ]] && ARGS+=(--set "data.sim.episodes_per_task=$EPISODES")
if [[ "${SMOKE:-0}" == 1 ]]; then
  ARGS+=(--set data.sim.episodes_per_task=1 --set data.validation_episodes=1 --set data.shard_size=1
         --set train.steps=2 --set train.batch_size=1 --set train.log_every=1 --set train.checkpoint_every=1
         --set train.validate_every=2 --set train.validation_steps=1
         --set vae.steps=2 --set vae.single_frame_steps=1 --set vae.stats_clips=2 --set vae.log_every=1)
fi
# shellcheck disable=SC2206
[[ -n "${EXTRA:-}" ]] && ARGS+=(${EXTRA})

RESUME=()
if compgen -G "$OUT/checkpoints/step_*/trainer_state.json" > /dev/null; then
  RESUME=(--resume)
  echo "[train_mini] resuming the run in $OUT"
fi

start=$(date +%s)
"$PY" -m kinema4d_core.cli train "$CONFIG" "${ARGS[@]}" --print-config > /dev/null   # validate first
"$PY" -m kinema4d_core.cli train "$CONFIG" "${ARGS[@]}" "${RESUME[@]}"
echo "[train_mini] done in $(( $(date +%s) - start )) s; export: $OUT/export (kinema4d-mini --checkpoint $OUT/export)"
if [[ -n "${PUBLISH:-}" ]]; then
  tmp="$PUBLISH.tmp.$$"
  rm -rf "$tmp" && mkdir -p "$(dirname "$PUBLISH")" && cp -r "$OUT/export" "$tmp"
  [[ -f "$PUBLISH/MODEL_CARD.md" ]] && cp "$PUBLISH/MODEL_CARD.md" "$tmp/"
  rm -rf "$PUBLISH.old.$$"; [[ -e "$PUBLISH" ]] && mv "$PUBLISH" "$PUBLISH.old.$$"
  mv "$tmp" "$PUBLISH" && rm -rf "$PUBLISH.old.$$"
  echo "[train_mini] published $PUBLISH"
fi
