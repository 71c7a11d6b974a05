# copycat-tf: reproducible runs, offline once built.
#   docker build -t copycat-tf .
#   docker run --rm -v "$PWD/runs:/runs" copycat-tf demo --out /runs/demo
FROM python:3.11-slim-bookworm

# Same steps as README "Install": Debian's offline Fashion-MNIST, then the package.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends dataset-fashion-mnist \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/copycat-tf
COPY pyproject.toml README.md ./
COPY copycat_tf ./copycat_tf
COPY models ./models
COPY cli ./cli
RUN pip install --no-cache-dir .

ENV TF_CPP_MIN_LOG_LEVEL=3
WORKDIR /runs
ENTRYPOINT ["copycat-tf"]
CMD ["--help"]
