"""How an optimizer stores its state (architecture.md §2.10): as the parameter's dtype
(torch's way), as float32 or bfloat16 whatever the parameter's dtype (`state_dtype`), or as
8-bit blockwise codes of bitsandbytes' dynamic maps with one float32 absmax per 256
elements (the 8-bit optimizers); 16-bit parameters may also keep a float32 master copy
(`master_weights`). The kernels load every state to float32, apply the rule and store it back
in its format, in the same single pass over memory."""
from __future__ import annotations

import torch

from .. import _C
from .._backend import local

F = _C.StateFormat
MASTER_KEY = "master_param"
HALF = (torch.float16, torch.bfloat16)


def absmax_key(name: str) -> str:
    """bitsandbytes' names: state1 -> absmax1."""
    return name.replace("state", "absmax")


def qmap_key(name: str) -> str:
    """bitsandbytes' names: state1 -> qmap1 (the map a checkpoint's codes decode with)."""
    return name.replace("state", "qmap")


def is_side_entry(key: str) -> bool:
    """Entries not shaped like the parameter: per-block absmax and the quantization maps."""
    return key.startswith(("absmax", "qmap"))


class Storage:
    def __init__(self, owner: str, state_dtype=None, master_weights: bool = False, min_8bit_size: int | None = None):
        if state_dtype not in (None, torch.float32, torch.bfloat16):
            raise TypeError(f"{owner}: state_dtype must be None (the parameter's dtype), torch.float32 or "
                            f"torch.bfloat16, got {state_dtype!r}")
        if not isinstance(master_weights, bool):
            raise TypeError(f"{owner}: master_weights must be a bool, got {master_weights!r}")
        if min_8bit_size is not None and (isinstance(min_8bit_size, bool) or not isinstance(min_8bit_size, int)
                                          or min_8bit_size < 0):
            raise ValueError(f"{owner}: min_8bit_size must be an int >= 0, got {min_8bit_size!r}")
        self.owner, self.state_dtype, self.master_weights = owner, state_dtype, master_weights
        self.min_8bit_size = min_8bit_size

    @property
    def plain(self) -> bool:
        """States as torch keeps them: no option changes them."""
        return self.state_dtype is None and not self.master_weights and self.min_8bit_size is None

    def format(self, p) -> "_C.StateFormat":
        """The storage of p's state: 8-bit from min_8bit_size elements up (bitsandbytes keeps
        float32 state below it), else state_dtype, else p's own dtype."""
        dt = p.dtype
        if self.min_8bit_size is not None:
            if p.numel() >= self.min_8bit_size and dt in (torch.float32, *HALF):
                return F.Block8
            return F.Param if dt in (torch.float32, torch.float64) or dt.is_complex else F.Float32
        if self.state_dtype is None or self.state_dtype == dt:
            return F.Param
        return F.BFloat16 if self.state_dtype == torch.bfloat16 else F.Float32

    def dtype(self, p) -> torch.dtype:
        """The dtype of p's state tensors (the codes' for 8-bit)."""
        return {F.Param: p.dtype, F.Float32: torch.float32, F.BFloat16: torch.bfloat16, F.Block8: torch.uint8}[
            self.format(p)]

    def master(self, p) -> bool:
        return self.master_weights and p.dtype in HALF

    def check_param(self, p, where: str) -> None:
        """What the storage options cannot serve, before any state exists."""
        if self.plain:
            return
        if self.format(p) != F.Param and (p.dtype == torch.float64 or p.dtype.is_complex):
            raise TypeError(f"{self.owner}: state_dtype {self.state_dtype} is for float32, float16 and bfloat16 "
                            f"parameters; {where} is {p.dtype}")
        if (self.format(p) != F.Param or self.master(p)) and local(p).device.type != "cpu":
            raise NotImplementedError(f"{self.owner}: low-precision state and master weights run on the CPU only so "
                                      f"far (the CUDA kernels store state as the parameters); {where} is on "
                                      f"{local(p).device}")

    def zeros(self, p, fill: float = 0.0) -> torch.Tensor:
        """A state tensor for p in its storage (8-bit: the codes, all decoding to 0)."""
        dtype = self.dtype(p)
        if dtype == torch.uint8 and fill != 0.0:
            raise ValueError(f"{self.owner}: 8-bit state starts at 0 (bitsandbytes too), got {fill}")
        # laid out as p (channels_last too): 8-bit blocks run over the param's memory order
        return torch.full_like(p, fill, dtype=dtype, memory_format=torch.preserve_format)

    def extra_state(self, p, names: list[str]) -> dict:
        """The entries 8-bit state and master weights add: an absmax per state tensor, and
        the float32 copy of the parameter."""
        out = {}
        if self.format(p) == F.Block8:  # per block of the local shard for DTensors
            blocks = -(-local(p).numel() // _C.QUANT_BLOCK)
            for n in names:
                out[absmax_key(n)] = torch.zeros(blocks, dtype=torch.float32, device=local(p).device)
        if self.master(p):
            out[MASTER_KEY] = p.detach().to(torch.float32, memory_format=torch.preserve_format).clone()
        return out

    def keys(self, p, names: list[str]) -> list[str]:
        """The state entries the kernel touches for p, in the order of its tables."""
        out = list(names)
        if self.format(p) == F.Block8:
            out += [absmax_key(n) for n in names]
        if self.master(p):
            out.append(MASTER_KEY)
        return out

    def entry_dtype(self, p, key: str) -> torch.dtype:
        if key == MASTER_KEY or is_side_entry(key):
            return torch.float32
        return self.dtype(p)

    @staticmethod
    def entry_shape(p, key: str) -> tuple:
        """absmax: one per block of the (local) memory; qmap: the 256 entries; else p's."""
        if key.startswith("absmax"):
            return (-(-local(p).numel() // _C.QUANT_BLOCK),)
        if key.startswith("qmap"):
            return (256,)
        return tuple(p.shape)

