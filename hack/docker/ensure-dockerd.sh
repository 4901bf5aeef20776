#!/usr/bin/env bash
# Make sure a Docker engine answers: install Debian's docker.io if missing, start dockerd if not
# running (log in $ELASTICJOB_CACHE/dockerd.log), wait for `docker info`. Idempotent.
# On a machine whose capability bounding set lacks capabilities runc grants to privileged
# containers (this CI machine lacks CAP_SYS_RESOURCE), dockerd is started with
# hack/kind/runc-capshim as its default runtime (docs/kind.md); ELASTICJOB_DOCKER_CAPSHIM=0 turns
# that off. ELASTICJOB_DOCKERD_NICE=N starts dockerd (and so its containers) at that niceness.
# An already running dockerd is left as it is.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${ELASTICJOB_CACHE:-$HOME/.cache/elasticjob}
mkdir -p "$cache"
if ! command -v dockerd >/dev/null; then
  echo "ensure-dockerd: installing docker.io and debootstrap" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >&2
fi
docker=/usr/bin/docker
if ! "$docker" info >/dev/null 2>&1; then
  args=(--storage-driver overlay2)
  if [ "${ELASTICJOB_DOCKER_CAPSHIM:-1}" != 0 ] && bash "$here/../kind/capshim.sh" --needed \
    && command -v go >/dev/null; then
    if shim=$(bash "$here/../kind/capshim.sh"); then
      args+=(--add-runtime "elasticjob-capshim=$shim" --default-runtime elasticjob-capshim)
      echo "ensure-dockerd: default runtime runc-capshim ($shim)" >&2
    else
      echo "ensure-dockerd: warning: could not build runc-capshim; --privileged will fail" >&2
    fi
  fi
  echo "ensure-dockerd: starting dockerd" >&2
  nohup nice -n "${ELASTICJOB_DOCKERD_NICE:-0}" dockerd "${args[@]}" >>"$cache/dockerd.log" 2>&1 &
  for _ in $(seq 1 60); do
    "$docker" info >/dev/null 2>&1 && break
    sleep 1
  done
fi
"$docker" info >/dev/null
