"""Run a westwind stage under accelerate's FSDP on CPU ranks (gloo), for tests: `torchrun ... fsdp_on_cpu.py MODULE ARGS`.

accelerate only switches to FSDP (or DeepSpeed) on accelerator devices (its MULTI_CPU path never does), so this
launcher presents the CPU ranks to accelerate as a multi-device group whose device is the CPU. With
DS_ACCELERATOR=cpu and accelerate's DeepSpeed environment, the same launcher runs DeepSpeed ZeRO on CPU ranks
(DeepSpeed's CPU accelerator falls back to gloo without oneCCL). Two CPU-only quirks are turned off, neither of
which exists on a GPU:
- torch FSDP1's `offload_to_cpu` full-state-dict gather frees the gathered tensor when the compute device is
  already the CPU (`FlatParamHandle.to_cpu` moves, then frees the "GPU" copy, which is the same storage);
- bitsandbytes repacks 4-bit weights into a CPU-only uint8 layout on the first no-grad CPU forward.
"""

from __future__ import annotations

import contextlib
import runpy
import sys

import bitsandbytes.nn.modules as bnb_modules
import torch
from accelerate.state import PartialState
from accelerate.utils import DistributedType
from torch.distributed.fsdp import _flat_param

_prepare_backend = PartialState._prepare_backend


def _cpu_ranks_as_devices(self, cpu=False, sagemaker_dp=False, backend=None):
    backend, kind = _prepare_backend(self, cpu, sagemaker_dp, backend)
    return ("gloo", DistributedType.MULTI_GPU) if kind == DistributedType.MULTI_CPU else (backend, kind)


def _cpu_device(self):
    self.device = torch.device("cpu")


@contextlib.contextmanager
def _already_on_cpu(self):
    yield


if __name__ == "__main__":
    torch.distributed.init_process_group("gloo")
    PartialState._prepare_backend = _cpu_ranks_as_devices
    PartialState.set_device = _cpu_device
    _flat_param.FlatParamHandle.to_cpu = _already_on_cpu
    bnb_modules._convert_weight_packed_for_cpu = lambda data, quant_state: (data, quant_state)
    module, *sys.argv[1:] = sys.argv[1:]
    sys.argv[0] = module
    runpy.run_module(module, run_name="__main__")
