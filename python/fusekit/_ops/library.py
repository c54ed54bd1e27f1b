"""The fusekit op library and the helpers every registration uses."""
from __future__ import annotations

import torch

lib = torch.library.Library("fusekit", "DEF")
DEVICES = ("CPU", "CUDA")


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
