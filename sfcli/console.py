"""What the loops show: a rich console, and progress bars and messages drawn by rank 0 only."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from sfcli.distributed import is_main_process


def warning_line(warning: str) -> str:
    """What was done otherwise than asked, that the user should know, as sfcli says it."""
    return f"sfcli: warning: {warning}"


def make_console(stderr: bool = False) -> Console:
    """A rich console; piped output (logs, CI, tests) gets wide lines instead of 80 columns."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 160)


def make_table(title: str, rows: list[tuple], columns: tuple[str, ...], console: Console) -> Table:
    table = Table(title=title, min_width=min(len(title), console.width))
    for column in columns:
        table.add_column(column, overflow="fold")  # paths are never cut short
    for row in rows:
        table.add_row(*(str(v) for v in row))
    return table


class Reporter:
    """Progress bars and messages, on rank 0 only. Bars are drawn on a terminal; elsewhere (logs,
    CI) each epoch still ends in one line."""

    def __init__(self, enabled: bool = True, console: Console | None = None):
        self.enabled = enabled and is_main_process()
        self.console = console or make_console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>7.1f} clips/s"), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=self.console, transient=True, disable=not (self.enabled and self.console.is_terminal),
        )
        self.warned = set()

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def task(self, description: str, total: int):
        return self.progress.add_task(description, total=total, rate=0.0, info="")

    def update(self, task, completed: int, rate: float, info: str = ""):
        self.progress.update(task, completed=completed, rate=rate, info=info)

    def done(self, task):
        self.progress.remove_task(task)

    def print(self, *args, **kwargs):
        if self.enabled:
            self.console.print(*args, **kwargs)

    def table(self, title: str, rows: list[tuple], columns: tuple[str, ...]) -> None:
        self.print(make_table(title, rows, columns, self.console))

    def warn(self, warnings) -> None:
        """Each warning one line, the first time this reporter meets it (a run validates the same
        videos every epoch); as written, paths and all: no markup, no wrapping."""
        for warning in warnings:
            if self.enabled and warning not in self.warned:
                self.warned.add(warning)
                self.console.out(warning_line(warning), highlight=False)
