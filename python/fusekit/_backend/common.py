"""What every kernel call shares: dtype codes, devices and streams, output allocation,
layouts, and (ptr, nbytes) pairs for the native size checks."""
from __future__ import annotations

import os

import torch
from torch._prims_common import suggest_memory_format

from .. import _C

DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
_REAL_OF_COMPLEX = {torch.complex64: torch.float32, torch.complex128: torch.float64}

# Fresh CPU outputs from this size up are backed by transparent huge pages (see
# csrc/cpu/memory.h); FUSEKIT_HUGEPAGES=0 turns the hint off.
_HUGE_OUTPUT_BYTES = 4 << 20
_HUGEPAGES = os.environ.get("FUSEKIT_HUGEPAGES", "1") != "0"


def new_output(shape, like: torch.Tensor, dtype: torch.dtype | None = None,
               memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """torch.empty for a kernel's output, on `like`'s device (and dtype unless given)."""
    t = torch.empty(shape, dtype=dtype or like.dtype, device=like.device, memory_format=memory_format)
    nbytes = t.numel() * t.element_size()
    if _HUGEPAGES and nbytes >= _HUGE_OUTPUT_BYTES and t.device.type == "cpu":
        _C.advise_huge_pages(t.data_ptr(), nbytes)
    return t


def buf(t: torch.Tensor | None) -> tuple[int, int]:
    """(data_ptr, nbytes) of a dense tensor, (0, 0) for None: what the native entry points
    check every pointer against (csrc/include/fusekit/buffers.h)."""
    if t is None:
        return 0, 0
    return t.data_ptr(), t.numel() * t.element_size()


def cuda_available() -> bool:
    """True when the CUDA kernels were built and a CUDA device is usable."""
    return bool(_C.cuda_built()) and _C.cuda_device_count() > 0


def build_info() -> dict:
    """Compiler, CUDA version and archs of this build, and the CPU ISA chosen at run time."""
    return {
        "compiler": _C.compiler,
        "cuda_built": bool(_C.cuda_built()),
        "cuda_version": _C.cuda_version or None,
        "cuda_archs": [a for a in _C.cuda_archs.split(",") if a],
        "cuda_devices": _C.cuda_device_count(),
        "cpu_isa": _C.cpu_isa(),
        "cpu_threads": _C.thread_backend(),
        "torch": torch.__version__,
    }


def as_real(t: torch.Tensor) -> torch.Tensor:
    """Complex tensors are updated element-wise as their real views, as torch does."""
    return torch.view_as_real(t) if t.is_complex() else t


def real_dtype(dtype: torch.dtype) -> torch.dtype:
    return _REAL_OF_COMPLEX.get(dtype, dtype)


def local(t):
    """The tensor whose memory a kernel touches: a DTensor's local shard, else t itself.
    Kernels and custom ops never see DTensors (they have no sharding rules)."""
    return t._local_tensor if hasattr(t, "_local_tensor") else t


def memory_format(*tensors) -> torch.memory_format:
    """torch's choice for a layer's outputs and gradients: channels_last when any 4-D
    operand suggests it (c10's suggest_memory_format, stride-based), else contiguous."""
    for t in tensors:
        if t is not None and t.dim() == 4 and _suggests_channels_last(t):
            return torch.channels_last
    return torch.contiguous_format


def in_format(t: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:
    """t laid out in fmt with the strides torch.empty(..., memory_format=fmt) gives: where a
    size-1 dimension makes two stride sets describe the same memory (one channel, a 1x1
    plane), torch's outputs carry the canonical ones."""
    t = t.contiguous(memory_format=fmt)
    if fmt == torch.channels_last and t.dim() == 4:
        n, c, h, w = t.shape
        want = (h * w * c, 1, w * c, c)
        if t.stride() != want:
            t = t.as_strided(t.shape, want)
    return t


def _suggests_channels_last(t: torch.Tensor) -> bool:
    if torch.jit.is_tracing():  # sizes are traced tensors there: the layout's plain reading
        return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()
    # The common case without torch's general (Python) rule, which costs ~2 us a call: a
    # contiguous NCHW tensor with more than one element per image never reads as channels_last.
    if t.is_contiguous() and t.numel() > 0 and t.shape[1] * t.shape[2] * t.shape[3] > 1:
        return False
    return suggest_memory_format(t) == torch.channels_last


def is_dense(t: torch.Tensor) -> bool:
    """Non-overlapping and dense: the elements fill [data_ptr, data_ptr + numel) exactly."""
    if t.is_contiguous():
        return True
    dims = sorted((s, n) for s, n in zip(t.stride(), t.shape) if n != 1)
    expected = 1
    for stride, size in dims:
        if stride != expected:
            return False
        expected *= size
    return True


def flat_compatible(tensors: list[torch.Tensor]) -> bool:
    """True when the tensors can be updated as flat arrays: all dense with one layout."""
    first = tensors[0]
    if all(t.is_contiguous() for t in tensors):
        return True
    return is_dense(first) and all(t.stride() == first.stride() for t in tensors[1:])


def check_steps(fn: str, **pairs) -> None:
    """Window arguments of a layer: stride, dilation, kernel_size positive (padding is each
    layer's own rule), RuntimeError as torch raises it."""
    for name, v in pairs.items():
        if min(v) < 1:
            raise RuntimeError(f"{fn}: {name} must be positive, got {tuple(v)}")


def current_stream(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.current_stream(device).cuda_stream
    return 0


def device_index(device: torch.device) -> int:
    """-1 for the CPU, the ordinal for CUDA; raises for other devices or a build without CUDA."""
    if device.type == "cpu":
        return -1
    if device.type == "cuda":
        if not cuda_available():
            raise RuntimeError(
                "fusekit was built without CUDA kernels or no CUDA device is usable; "
                "rebuild with nvcc available (FUSEKIT_CUDA=1) to update CUDA tensors"
            )
        return device.index if device.index is not None else torch.cuda.current_device()
    raise RuntimeError(f"fusekit kernels run on CPU and CUDA tensors, not on device '{device.type}'")


def set_launch(args, t: torch.Tensor):
    """Fills the fields every kernel call shares (device, stream, CPU threads, dtype) from
    the tensor the call works on; returns args."""
    args.device = device_index(t.device)
    args.stream = current_stream(t.device)
    args.num_threads = torch.get_num_threads()
    args.dtype = DTYPE_CODES[t.dtype]
    return args
