"""The fusekit op library and the helpers every registration uses."""
from __future__ import annotations

import torch

lib = torch.library.Library("fusekit", "DEF")
DEVICES = ("CPU", "CUDA")
_OPS: dict = {}  # name -> (the op, its CPU/CUDA implementation); str keys: Dynamo traces them
_PLAIN_TYPES = (torch.Tensor, torch.nn.Parameter)


def define(schema: str, impl, fake, vmap=None) -> None:
    """Defines fusekit::<name> with one implementation for CPU and CUDA, its fake (meta)
    implementation and, if given, its vmap rule."""
    name = schema.split("(", 1)[0]
    lib.define(schema)
    for key in DEVICES:
        lib.impl(name, impl, key)
    torch.library.register_fake(f"fusekit::{name}", fake, lib=lib)
    if vmap is not None:
        torch.library.register_vmap(f"fusekit::{name}", vmap, lib=lib)
    _OPS[name] = (getattr(torch.ops.fusekit, name), impl)


def plain_eager(args) -> bool:
    """True when nothing between a call and the op's implementation would act on it: not
    compiling, tracing (jit), profiling or under a functorch transform, no torch function
    or dispatch mode (fake tensors, export, FlopCounter...), and every tensor a dense CPU or
    CUDA tensor of torch's own types (no subclass, meta, sparse)."""
    if (torch.compiler.is_compiling() or torch._C._get_tracing_state() is not None
            or torch._C._len_torch_dispatch_stack() or torch._C._is_torch_function_mode_enabled()
            or torch.autograd._profiler_enabled() or torch._C._are_functorch_transforms_active()):
        return False
    for a in args:
        if isinstance(a, torch.Tensor) and (type(a) not in _PLAIN_TYPES or not (a.is_cpu or a.is_cuda)
                                            or a.layout is not torch.strided):
            return False
    return True


def call(name: str, *args):
    """fusekit::<name>(*args). In plain eager mode (plain_eager) the implementation is
    called directly: the dispatcher costs ~8 us per call, as long as a small layer's
    kernel, and would only pass the call through. Everything else goes through the op."""
    op, impl = _OPS[name]
    if plain_eager(args):
        return impl(*args)
    return op(*args)
