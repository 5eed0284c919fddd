#!/usr/bin/env bash
# Start N palm_jax processes on this machine, as a multi-host run would (for testing the
# multi-host code paths, or to use several GPUs as separate processes).
#
#   launch/local.sh N --config=configs/smoke.py --workdir=DIR [more palm_jax.main flags]
#
# Process i gets --process_id=i and talks to process 0 at localhost:$PORT (default 12355).
# On CPU (JAX_PLATFORMS=cpu, the default when no GPU is visible) each process simulates
# $DEVICES_PER_PROCESS devices (default 4) and uses gloo collectives; with GPUs, process i
# sees GPU i only (CUDA_VISIBLE_DEVICES). Logs go to DIR/logs/process_<i>.log; the script
# waits for all processes and exits non-zero if any failed.
set -euo pipefail

usage="usage: launch/local.sh N --config=configs/<x>.py --workdir=DIR [flags...]"
if [[ $# -lt 1 || ! "$1" =~ ^[0-9]+$ || "$1" -lt 1 ]]; then
  echo "error: the first argument must be the number of processes N (a positive integer); $usage" >&2
  exit 2
fi
n=$1; shift
workdir=""
for arg in "$@"; do
  case "$arg" in --workdir=*) workdir="${arg#--workdir=}";; esac
done
if [[ -z "$workdir" ]]; then
  echo "error: no --workdir=DIR given; every process writes its checkpoints there. $usage" >&2
  exit 2
fi
if ! printf '%s\n' "$@" | grep -q -- '^--config='; then
  echo "error: no --config=FILE given (e.g. --config=configs/smoke.py). $usage" >&2
  exit 2
fi

port=${PORT:-12355}
python=${PYTHON:-python3}
platform=${JAX_PLATFORMS:-}
if [[ -z "$platform" ]]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    platform=cuda; else platform=cpu; fi
fi
per=${DEVICES_PER_PROCESS:-4}
mkdir -p "$workdir/logs"
echo "launch/local.sh: $n processes on $platform, coordinator localhost:$port, workdir $workdir"
[[ "$platform" == cpu ]] && echo "  each process simulates $per CPU devices (gloo collectives)"

pids=()
for ((i = 0; i < n; i++)); do
  log="$workdir/logs/process_$i.log"
  echo "  process $i: $python -m palm_jax.main --distributed --process_id=$i $* > $log"
  if [[ "$platform" == cpu ]]; then
    env JAX_PLATFORMS=cpu JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo \
        XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=$per" \
        "$python" -m palm_jax.main --distributed --coordinator_address="localhost:$port" \
        --num_processes="$n" --process_id="$i" "$@" >"$log" 2>&1 &
  else
    env CUDA_VISIBLE_DEVICES="$i" "$python" -m palm_jax.main --distributed \
        --coordinator_address="localhost:$port" --num_processes="$n" --process_id="$i" \
        "$@" >"$log" 2>&1 &
  fi
  pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM
status=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then
    echo "launch/local.sh: process $i failed; see $workdir/logs/process_$i.log" >&2
    status=1
  fi
done
exit $status
