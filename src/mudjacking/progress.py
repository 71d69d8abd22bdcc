"""Progress bars for every long step (rich), silenced in tests and when output is not wanted."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@contextmanager
def progress_bar(total: int, description: str, enabled: bool = True) -> Iterator[Callable[..., None]]:
    """Yields ``advance(steps=1, info="")``; ``info`` is shown beside the bar (e.g. the loss terms)."""
    if not enabled:
        yield lambda steps=1, info="": None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
    )
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(description, total=total, info="")

        def advance(steps: int = 1, info: str = "") -> None:
            progress.update(task, advance=steps, info=info)

        yield advance
