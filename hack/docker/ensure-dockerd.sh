#!/usr/bin/env bash
# Make sure a Docker engine answers: install Debian's docker.io if missing, start dockerd if not
# running (log in $ELASTICJOB_CACHE/dockerd.log), wait for `docker info`. Idempotent.
set -euo pipefail
cache=${ELASTICJOB_CACHE:-$HOME/.cache/elasticjob}
mkdir -p "$cache"
if ! command -v dockerd >/dev/null; then
  echo "ensure-dockerd: installing docker.io and debootstrap" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >&2
fi
docker=/usr/bin/docker
if ! "$docker" info >/dev/null 2>&1; then
  echo "ensure-dockerd: starting dockerd" >&2
  nohup dockerd --storage-driver overlay2 >>"$cache/dockerd.log" 2>&1 &
  for _ in $(seq 1 60); do
    "$docker" info >/dev/null 2>&1 && break
    sleep 1
  done
fi
"$docker" info >/dev/null
