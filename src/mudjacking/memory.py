"""Memory guards: a set too large for this machine is one error line naming it, not a kill by the OOM killer.

A patch holds D (and its augmented copies) as float32 at the images' own size; a laptop of 8 GB asked to hold more
than it has is swamped (swapping, then killed) with nothing said. Each guard compares what a step will hold with the
memory free now, and refuses with both figures and the fix."""

from __future__ import annotations

from pathlib import Path

import psutil

from mudjacking.errors import DataError

SHARE = 0.8
"""The most of the memory free now that one step may take (the model, its gradients and the batches need the rest)."""


def available_bytes() -> int:
    """Memory free for new allocations now (``psutil``'s *available*: free plus reclaimable caches)."""
    return int(psutil.virtual_memory().available)


def require_memory(needed: int, source: str | Path, what: str, fix: str) -> None:
    """Raises :class:`DataError` naming ``source`` when ``needed`` bytes exceed :data:`SHARE` of the free memory."""
    free = available_bytes()
    if needed > SHARE * free:
        raise DataError(
            f"{source}: {what} needs about {needed / 2**30:.1f} GiB, and this machine has {free / 2**30:.1f} GiB "
            f"free; {fix}"
        )
