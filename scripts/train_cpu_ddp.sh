#!/usr/bin/env bash
# Train on N CPU processes with DDP (gloo), on this machine only: every rank, the rendezvous and
# the gloo transport stay on 127.0.0.1 (GLOO_SOCKET_IFNAME=lo). The same `kinema4d train` code as
# one process or many GPUs; N processes x gradient accumulation A draw the same micro-batches as
# 1 process x accumulation N*A, so the results match (tests/training/test_train_ddp.py).
#   scripts/train_cpu_ddp.sh N CONFIG [--set key=value ...] [--resume]
# Environment: PORT=29500 (rendezvous port on 127.0.0.1), THREADS=1 (torch threads per process).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -lt 2 || "$1" == -h || "$1" == --help ]]; then
  sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0
fi
N=$1; shift
PY=${PY:-.venv/bin/python}
export GLOO_SOCKET_IFNAME=lo MASTER_ADDR=127.0.0.1 ACCELERATE_USE_CPU=1
export OMP_NUM_THREADS=${THREADS:-1} MKL_NUM_THREADS=${THREADS:-1}
exec "$PY" -m torch.distributed.run --nnodes 1 --nproc_per_node "$N" --master_addr 127.0.0.1 \
  --master_port "${PORT:-29500}" -m kinema4d_core.cli train "$@"
