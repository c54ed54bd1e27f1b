"""Progress on stderr (tqdm, or a plain line per task without it) and flushed line output
on stdout that does not tear the bar."""
from __future__ import annotations

import sys
import time


class Progress:
    """weights: one per task, about its share of the run (the bar advances by it)."""

    def __init__(self, weights: list[float], enabled: bool = True):
        self.weights, self.done, self.t0 = weights, 0, time.perf_counter()
        self.bar = None
        self.enabled = enabled
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self.bar = tqdm(total=sum(weights), file=sys.stderr, dynamic_ncols=True,
                                bar_format="{percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}")

    def status(self, msg: str) -> None:
        """What is running now (setting up a peer, compiling, timing)."""
        msg = f"task {self.done + 1}/{len(self.weights)}: {msg}"
        if self.bar is not None:
            self.bar.set_postfix_str(msg[:80], refresh=True)
        elif self.enabled:
            print(f"[{time.perf_counter() - self.t0:5.0f}s] {msg}", file=sys.stderr, flush=True)

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.update(self.weights[self.done])
        self.done += 1

    def print(self, text: str = "") -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stdout)
        else:
            print(text, file=sys.stdout)
        sys.stdout.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
