# westwind on CUDA: torch from the PyTorch devel image (nvcc included, so flash-attn can build),
# the pinned stack from requirements.txt, flash-attn, and the package.
#   docker build -t westwind .
#   docker run --gpus all --ipc=host -v $PWD/outputs:/workspace/outputs westwind \
#     accelerate launch --config_file recipes/accelerate/zero3.yaml scripts/run_sft.py recipes/zephyr-7b.yaml
# BASE_IMAGE's torch must match the torch pin in requirements.txt, or pip replaces it with a PyPI build.
ARG BASE_IMAGE=pytorch/pytorch:2.13.0-cuda12.8-cudnn9-devel
FROM ${BASE_IMAGE}

ARG FLASH_ATTN_VERSION=2.8.3
# flash-attn compiles one CUDA kernel per job; each job can take several GB of RAM.
ARG MAX_JOBS=8

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/workspace/.cache/huggingface

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Unpinned apt packages on purpose: pins break whenever the base image's Ubuntu snapshot moves.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ninja-build \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /workspace

COPY requirements.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt \
    && MAX_JOBS=${MAX_JOBS} pip install "flash-attn==${FLASH_ATTN_VERSION}" --no-build-isolation

COPY pyproject.toml README.md /opt/westwind/
COPY src /opt/westwind/src
RUN pip install --no-deps /opt/westwind

COPY recipes /workspace/recipes
COPY scripts /workspace/scripts

RUN useradd --create-home --uid 1000 --shell /bin/bash westwind \
    && mkdir -p /workspace/outputs /workspace/.cache \
    && chown -R westwind:westwind /workspace
USER 1000:1000

CMD ["westwind", "--help"]
