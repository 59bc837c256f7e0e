# westwind on CUDA: torch from the PyTorch devel image (nvcc included, so flash-attn can build),
# the pinned stack from requirements.txt, DeepSpeed, Liger kernels, flash-attn, and the package.
#   docker build -t westwind .        # --build-arg MAX_JOBS=2 on a builder with < 32 GB of RAM
# How to run it (HF token, cache and outputs mounts, your uid): README, "In Docker".
# BASE_IMAGE's torch must match the torch pin in requirements.txt, or pip replaces it with a PyPI build.
ARG BASE_IMAGE=pytorch/pytorch:2.13.0-cuda12.8-cudnn9-devel
FROM ${BASE_IMAGE}

ARG FLASH_ATTN_VERSION=2.8.3
ARG DEEPSPEED_VERSION=0.19.8
ARG LIGER_KERNEL_VERSION=0.8.5
# flash-attn compiles one CUDA kernel per job, each taking up to ~8 GB of RAM: 4 jobs fit a 32-48 GB builder.
ARG MAX_JOBS=4
# Build kernels only for the GPUs the image targets: Ampere A100 (8.0) and Hopper H100/H200 (9.0). Add 8.9
# (L4/L40S) or 10.0/12.0 (Blackwell) to both lists; each arch adds build time and image size.
ARG TORCH_CUDA_ARCH_LIST="8.0;9.0"
ARG FLASH_ATTN_CUDA_ARCHS="80;90"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/workspace/.cache/huggingface \
    TRITON_CACHE_DIR=/workspace/.cache/triton \
    TORCH_EXTENSIONS_DIR=/workspace/.cache/torch_extensions

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Unpinned apt packages on purpose: pins break whenever the base image's Ubuntu snapshot moves.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ninja-build \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /workspace

COPY requirements.txt /tmp/requirements.txt
# DeepSpeed compiles its ops just in time (nvcc is in the image), for TORCH_CUDA_ARCH_LIST's arches.
ENV TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST}
RUN pip install -r /tmp/requirements.txt "deepspeed==${DEEPSPEED_VERSION}" "liger-kernel==${LIGER_KERNEL_VERSION}" \
    && MAX_JOBS=${MAX_JOBS} NVCC_THREADS=2 FLASH_ATTN_CUDA_ARCHS=${FLASH_ATTN_CUDA_ARCHS} \
       pip install "flash-attn==${FLASH_ATTN_VERSION}" --no-build-isolation

COPY pyproject.toml README.md /opt/westwind/
COPY src /opt/westwind/src
RUN pip install --no-deps /opt/westwind

COPY recipes /workspace/recipes
COPY scripts /workspace/scripts

# Runs as uid 1000 by default; `docker run --user "$(id -u):$(id -g)"` makes files in the mounted outputs/
# yours, so the folders the image writes to are open to any uid.
RUN useradd --create-home --uid 1000 --shell /bin/bash westwind \
    && mkdir -p /workspace/outputs /workspace/.cache/huggingface /workspace/.cache/home \
    && chown -R westwind:westwind /workspace \
    && chmod -R a+rwX /workspace/outputs /workspace/.cache
ENV HOME=/workspace/.cache/home
USER 1000:1000

CMD ["westwind", "--help"]
