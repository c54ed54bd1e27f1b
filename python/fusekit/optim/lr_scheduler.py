"""fusekit.optim.lr_scheduler: LinearWarmup (see fusekit.schedule)."""
from ..schedule import LinearWarmup

__all__ = ["LinearWarmup"]
