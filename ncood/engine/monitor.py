"""What a training run shows while it runs.

On a terminal: rich progress bars (epochs, the steps of the epoch, feature extraction),
advanced every few steps only. Anywhere else (a batch scheduler's log, a pipe): one plain line
per epoch, since a log file cannot redraw a bar. Nothing when quiet, and nothing on ranks
other than 0.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, TextIO


class TrainingMonitor:
    def __init__(
        self,
        enabled: bool,
        title: str,
        epochs: int,
        start: int,
        steps: int,
        stream: TextIO | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.bars = enabled and _is_terminal(self.stream)
        self.title, self.epochs, self.steps = title, epochs, steps
        self._progress: Any = None
        self._stack = contextlib.ExitStack()
        if self.bars:
            from ncood.progress import progress_bar  # rich loads only for a terminal

            self._progress = self._stack.enter_context(progress_bar(True))
            self._epochs_task = self._progress.add_task(
                f"train {title}", total=epochs, completed=start, status=""
            )
            self._steps_task = self._progress.add_task("  epoch", total=steps, status="")

    def __enter__(self) -> TrainingMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def epoch_started(self, epoch: int) -> None:
        if self._progress is not None:
            self._progress.reset(self._steps_task, total=self.steps, description=f"  epoch {epoch}")

    def steps_done(self, count: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._steps_task, count)

    @contextlib.contextmanager
    def features(self, total: int):
        """A bar for one feature extraction; yields the callback that advances it."""
        if self._progress is None:
            yield None
            return
        task = self._progress.add_task("  features", total=total, status="")
        try:
            yield lambda count: self._progress.advance(task, count)
        finally:
            self._progress.remove_task(task)

    def epoch_done(self, record: dict[str, Any]) -> None:
        summary = (
            f"loss {record['train_loss']:.3f} acc {record['train_acc']:.3f} "
            f"test {record['test_acc']:.3f}"
        )
        if self._progress is not None:
            self._progress.update(self._epochs_task, advance=1, status=summary)
        elif self.enabled:
            print(
                f"{self.title} epoch {record['epoch']}/{self.epochs}: {summary}, "
                f"lr {record['lr']:.4g}, {record['seconds']:.1f} s, "
                f"{record['images_per_s']:.0f} images/s",
                file=self.stream,
                flush=True,
            )


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
