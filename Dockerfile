# copycat-tf: pinned, non-root runs that need no network once the image is built.
#   docker build -t copycat-tf .
#   docker build -t copycat-tf --build-arg BASE=copycat-tf-base:bookworm .   # a local Debian bookworm base
#   docker run --rm --network none -v "$PWD/runs:/runs" copycat-tf demo --out /runs/demo
# README "Docker" has the rest; scripts/docker-smoke.sh builds and runs it in CI.
#
# No "# syntax=" line on purpose: the builder's own Dockerfile frontend (BuildKit's, in Docker
# 20.10 and newer) is used, so a build never pulls a frontend image from a registry.

# Any Debian bookworm image: python:3.11-slim-bookworm (Python in /usr/local) or a bare one
# (debootstrap --variant=minbase, no Python), to which Debian's python3 (3.11) is added.
# Both are Python 3.11, the interpreter the lock file is resolved for.
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS runtime
# Debian's offline Fashion-MNIST (README "Install"), and Python where the base has none.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends dataset-fashion-mnist \
    && if ! command -v python3 >/dev/null; then \
        apt-get install -y --no-install-recommends python3; \
    fi \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*
# Non-root by default; `docker run --user UID:GID` works too: HOME (Keras, Matplotlib and
# TensorFlow caches) is a folder any user may write, and /runs is writable by anyone.
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /tmp --shell /usr/sbin/nologin copycat \
    && mkdir -p /runs && chmod 1777 /runs

FROM runtime AS build
# The venv module: Debian ships it apart from python3; the python image has it built in.
# hadolint ignore=DL3008
RUN if ! python3 -c "import ensurepip" 2>/dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# cpu: tensorflow-cpu, no CUDA code (the tested default). gpu: tensorflow[and-cuda] with
# NVIDIA's CUDA wheels, several GB more, for `docker run --gpus all`; not built or run in CI.
ARG TF_VARIANT=cpu
COPY docker/requirements-${TF_VARIANT}.lock /tmp/requirements.lock
# Every file pip fetches must match a hash in the lock (--require-hashes), and only wheels
# are taken, so nothing is compiled. A host whose HTTPS goes through an inspecting proxy
# passes that proxy's CA bundle as the build secret "pip-ca"; a secret is never stored in a
# layer. The pip cache is a build-cache mount: downloads are reused by the next build and
# are not part of the image.
# hadolint ignore=DL3042
RUN --mount=type=secret,id=pip-ca \
    --mount=type=cache,target=/root/.cache/pip,id=copycat-tf-pip \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
    && pip install --disable-pip-version-check --require-hashes --no-deps --only-binary :all: \
        -r /tmp/requirements.lock
# Never used at run time, 350 MB of the image: TensorFlow's C++ headers (for compiling custom
# ops) and libclang (TensorFlow's op-binding generator; nothing here imports it).
RUN rm -rf /opt/venv/lib/python3.*/site-packages/tensorflow/include \
    && pip uninstall --disable-pip-version-check --yes libclang

# The project itself, from this checkout, as a wheel built with the locked setuptools (no
# downloads here); its own stage, so that a change to the sources rebuilds a small layer only.
FROM build AS project
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY copycat_tf ./copycat_tf
COPY models ./models
COPY cli ./cli
RUN pip wheel --disable-pip-version-check --no-cache-dir --no-index --no-deps \
        --no-build-isolation --wheel-dir /wheels .

FROM runtime
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    TF_CPP_MIN_LOG_LEVEL=3
RUN --mount=type=bind,from=project,source=/wheels,target=/wheels \
    pip install --disable-pip-version-check --no-cache-dir --no-index --no-deps /wheels/*.whl \
    && copycat-tf --version
USER 10001:10001
WORKDIR /runs
VOLUME ["/runs"]
ENTRYPOINT ["copycat-tf"]
CMD ["--help"]
