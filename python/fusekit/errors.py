"""fusekit's error contract (README, "Errors"): bad input raises before anything is written,
with a message that names the argument, the value and the rule, and an exception of the
type torch raises for the same mistake. Where torch raises an incidental type (an
IndexError from unpacking, a KeyError from a missing state entry), fusekit's exception is
an instance of both that type and the one the contract names (ValueError for bad values,
TypeError for bad types), so code written against either catches it."""
from __future__ import annotations

import functools


class _PlainKeyError(KeyError):
    """KeyError prints its argument quoted (as a key); these carry a sentence."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@functools.lru_cache(maxsize=None)
def _combined(*types: type) -> type:
    if len(types) == 1:
        return types[0]
    bases = tuple(_PlainKeyError if t is KeyError else t for t in types)
    return type("".join(t.__name__ for t in types), bases, {"__module__": "fusekit.errors"})


def error(message: str, *types: type) -> Exception:
    """An exception that is an instance of every type given (the first names the kind)."""
    if types == (KeyError,):
        return _PlainKeyError(message)
    return _combined(*types)(message)
