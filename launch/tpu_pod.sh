#!/usr/bin/env bash
# palm_jax on a Cloud TPU pod slice: every worker VM runs one process of the same program.
#
#   export TPU_NAME=palm-pod ZONE=us-central2-b PROJECT=my-project
#   launch/tpu_pod.sh create      # ACCELERATOR_TYPE (v4-32) and RUNTIME_VERSION
#                                 # (tpu-ubuntu2204-base) may be overridden
#   launch/tpu_pod.sh setup       # copy this checkout to every worker, one venv each;
#                                 # with BUCKET=my-bucket also mount it at /gcs/my-bucket
#   CONFIG=configs/cifar10.py WORKDIR=/gcs/my-bucket/runs/palm_c10 launch/tpu_pod.sh run
#   launch/tpu_pod.sh delete
#
# WORKDIR must be visible to every worker (the gcsfuse mount above, or a shared disk):
# all workers take part in Orbax checkpoints, and `run` again resumes from it.
set -euo pipefail

cmd=${1:-}
need() {
  for v in "$@"; do
    if [[ -z "${!v:-}" ]]; then
      echo "error: $v is not set; export $v=... before 'launch/tpu_pod.sh $cmd' (see the header of this script)" >&2
      exit 2
    fi
  done
}
case "$cmd" in create|setup|run|delete) ;; *)
  echo "error: usage: launch/tpu_pod.sh {create|setup|run|delete} (got '${cmd}')" >&2; exit 2;;
esac
need TPU_NAME ZONE
project_flag=()  # an array: no word splitting of PROJECT, and nothing when it is unset
if [[ -n "${PROJECT:-}" ]]; then project_flag=(--project="$PROJECT"); fi
ssh_all() {  # run a command on every worker of the slice
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" "${project_flag[@]}" --worker=all \
      --command="$1"
}
# Values that go into the remote shell's command line, quoted for it (spaces, $, quotes).
remote_dir=$(printf '%q' "${REMOTE_DIR:-palm_jax}")

case "$cmd" in
  create)
    accel=${ACCELERATOR_TYPE:-v4-32}; version=${RUNTIME_VERSION:-tpu-ubuntu2204-base}
    echo "Creating TPU $TPU_NAME ($accel, $version) in $ZONE"
    gcloud compute tpus tpu-vm create "$TPU_NAME" --zone="$ZONE" "${project_flag[@]}" \
        --accelerator-type="$accel" --version="$version"
    ;;
  setup)
    echo "Copying $(pwd) to ~/$remote_dir on every worker of $TPU_NAME and installing"
    tar --exclude=.git --exclude='.venv*' --exclude=runs -czf /tmp/palm_jax_src.tgz .
    gcloud compute tpus tpu-vm scp /tmp/palm_jax_src.tgz "$TPU_NAME":/tmp/ --zone="$ZONE" \
        "${project_flag[@]}" --worker=all
    ssh_all "mkdir -p ~/$remote_dir && tar -xzf /tmp/palm_jax_src.tgz -C ~/$remote_dir && \
      cd ~/$remote_dir && python3 -m venv .venv && .venv/bin/pip install -q -U pip && \
      .venv/bin/pip install -q -r requirements.txt 'jax[tpu]'"
    if [[ -n "${BUCKET:-}" ]]; then
      echo "Mounting gs://$BUCKET at /gcs/$BUCKET on every worker (gcsfuse)"
      bucket=$(printf '%q' "$BUCKET")
      ssh_all "command -v gcsfuse >/dev/null || (sudo apt-get update -q && sudo apt-get install -yq gcsfuse); \
        sudo mkdir -p /gcs/$bucket && sudo chown \$USER /gcs/$bucket && \
        (mountpoint -q /gcs/$bucket || gcsfuse --implicit-dirs $bucket /gcs/$bucket)"
    fi
    ;;
  run)
    need CONFIG WORKDIR
    # EXTRA is flags text for the remote shell (experiments/cluster.py quotes each flag).
    run="cd ~/$remote_dir && .venv/bin/python -m palm_jax.main --distributed \
--config=$(printf '%q' "$CONFIG") --workdir=$(printf '%q' "$WORKDIR") ${EXTRA:-}"
    echo "On every worker of $TPU_NAME: $run"
    ssh_all "$run"
    ;;
  delete)
    echo "Deleting TPU $TPU_NAME in $ZONE"
    gcloud compute tpus tpu-vm delete "$TPU_NAME" --zone="$ZONE" "${project_flag[@]}" --quiet
    ;;
esac
