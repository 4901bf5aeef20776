# Two images from one Dockerfile (classic builder; no registry needed):
#   docker build --build-arg BASE_IMAGE=elasticjob-base:bookworm --target operator -t elasticjob-operator:dev .
#   docker build --build-arg BASE_IMAGE=elasticjob-base:bookworm --target training -t elasticjob-training:dev .
# BASE_IMAGE must provide python3 (>= 3.11) with venv and ca-certificates; hack/docker/base-image.sh
# makes one with debootstrap. Extra CA certificates (corporate proxies) go in hack/docker/extra-ca/*.crt.
ARG BASE_IMAGE=elasticjob-base:bookworm

FROM ${BASE_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY hack/docker/extra-ca/ /usr/local/share/ca-certificates/extra/
RUN find /usr/local/share/ca-certificates/extra -type f ! -name '*.crt' -delete \
    && update-ca-certificates >/dev/null \
    && python3 -m venv /opt/venv
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt

FROM base AS build
COPY pyproject.toml README.md /src/
COPY api /src/api
COPY operator /src/operator
COPY launcher /src/launcher
COPY localcluster /src/localcluster
RUN pip wheel --no-deps -w /wheels /src

FROM base AS operator
COPY --from=build /wheels /wheels
RUN pip install "$(ls /wheels/elasticjob-*.whl)[operator]" && rm -rf /wheels
# uid 65532 has no passwd entry: kopf's default identity (getpass.getuser()) reads USER first
ENV USER=elasticjob-operator
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["elasticjob-operator"]

FROM base AS training
# torch first, in its own layer: the project's code changes far more often than torch
RUN pip install "torch>=2.9"
COPY --from=build /wheels /wheels
RUN pip install "$(ls /wheels/elasticjob-*.whl)[launcher]" && rm -rf /wheels
USER 65532:65532
WORKDIR /tmp
ENV HOME=/tmp
CMD ["elasticjob-launch", "--help"]

# CI only, never shipped: `training` less the GPU libraries CPU training never maps
# (hack/docker/cpu-trim.py decides by running the CPU example), so that `kind load` in CI moves
# less. A copy of the trimmed venv into a fresh stage leaves the deleted files out of the layers;
# hack/docker/build-images.sh runs the example in the result (`cpu-trim.py check`).
FROM training AS training-trim
USER root
COPY hack/docker/cpu-trim.py manifests/examples/train_cpu.py /ci/
RUN python /ci/cpu-trim.py trim /ci/train_cpu.py

FROM base AS training-ci
COPY --from=training-trim /opt/venv /opt/venv
COPY --from=training-trim /ci /ci
USER 65532:65532
WORKDIR /tmp
ENV HOME=/tmp
CMD ["elasticjob-launch", "--help"]
