"""The optimizer's state mapping, with a version counter: the cached step tables check it
once per group and step instead of looking up every parameter's state (a dict lookup keyed
by a tensor runs Tensor.__hash__, Python code, per parameter)."""
from __future__ import annotations

from collections import defaultdict


class TrackedState(defaultdict):
    """defaultdict(dict) whose `version` changes whenever an entry is added, replaced or
    removed (mutations of the per-parameter dicts are checked by the tables themselves)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.version = 0

    def _bump(self) -> None:
        self.version += 1

    def __setitem__(self, key, value) -> None:
        self._bump()
        super().__setitem__(key, value)

    def __delitem__(self, key) -> None:
        self._bump()
        super().__delitem__(key)

    def __ior__(self, other):
        self._bump()
        return super().__ior__(other)

    def __reduce__(self):
        return (type(self), (self.default_factory,), None, None, iter(self.items()))

    def _mutator(name):
        def method(self, *args, **kwargs):
            self._bump()
            return getattr(defaultdict, name)(self, *args, **kwargs)
        method.__name__ = name
        return method

    for _name in ("clear", "pop", "popitem", "setdefault", "update"):
        locals()[_name] = _mutator(_name)
    del _name, _mutator


def tracked(state) -> TrackedState:
    if isinstance(state, TrackedState):
        return state
    out = TrackedState(dict)
    defaultdict.update(out, state)
    return out
