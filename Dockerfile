# westwind on CUDA: torch from the PyTorch devel image (nvcc included, so flash-attn can build),
# the pinned stack from requirements.txt, DeepSpeed, Liger kernels, flash-attn, and the package.
#   docker build -t westwind .        # --build-arg MAX_JOBS=2 on a builder with < 32 GB of RAM
# How to run it (HF token, cache and outputs mounts, your uid): README, "In Docker".
# BASE_IMAGE's torch must match the torch pin in requirements.txt, or pip replaces it with a PyPI build.
# The tag is one Docker Hub lists for torch 2.13.0 (seen in published tag listings and Dockerfiles; there is no
# cuda12.8 or cuda12.9 devel tag for 2.13.0). It was not pulled here (no registry access) and its digest was
# not found: pin it with `docker buildx imagetools inspect pytorch/pytorch:2.13.0-cuda12.6-cudnn9-devel`,
# then BASE_IMAGE=pytorch/pytorch:2.13.0-cuda12.6-cudnn9-devel@sha256:<digest>. This base is Ubuntu 24.04.
ARG BASE_IMAGE=pytorch/pytorch:2.13.0-cuda12.6-cudnn9-devel
FROM ${BASE_IMAGE}

ARG FLASH_ATTN_VERSION=2.8.3
ARG DEEPSPEED_VERSION=0.19.8
ARG LIGER_KERNEL_VERSION=0.8.5
# flash-attn 2.8.3 publishes prebuilt wheels only for older torch releases: none matches torch 2.13, so pip
# compiles it from source here. That build's time was not measured (no Docker engine or GPU builder was
# available); it compiles one CUDA kernel per job, each taking up to ~8 GB of RAM: 4 jobs fit a 32-48 GB builder.
ARG MAX_JOBS=4
# Build kernels only for the GPUs the image targets: Ampere A100 (8.0) and Hopper H100/H200 (9.0).
# TORCH_CUDA_ARCH_LIST (DeepSpeed's JIT ops) takes any arch, e.g. add 8.9 for L4/L40S. FLASH_ATTN_CUDA_ARCHS
# takes only 80, 90, 100 and 120 (flash-attn 2.8.3's setup.py ignores others): its sm_80 kernels run on
# L4/L40S (sm_89); add 100/120 for Blackwell. Each arch adds build time and image size.
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
# scripts/gpu_smoke.sh runs benchmarks/gpu_smoke.py
COPY benchmarks /workspace/benchmarks

# Runs as uid 1000 by default; `docker run --user "$(id -u):$(id -g)"` makes files in the mounted outputs/
# yours, so the folders the image writes to are open to any uid. Ubuntu 24.04 images already hold `ubuntu`
# at uid 1000, which would make useradd fail: whoever holds uid 1000 is removed first.
RUN if getent passwd 1000 > /dev/null; then userdel --remove "$(getent passwd 1000 | cut -d: -f1)"; fi \
    && useradd --create-home --uid 1000 --shell /bin/bash westwind \
    && mkdir -p /workspace/outputs /workspace/.cache/huggingface /workspace/.cache/home \
    && chown -R westwind:westwind /workspace \
    && chmod -R a+rwX /workspace/outputs /workspace/.cache
ENV HOME=/workspace/.cache/home
USER 1000:1000

CMD ["westwind", "--help"]
