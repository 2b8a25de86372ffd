"""Progress bars on stderr for long work, with `rich` (a flax dependency).

    with progress.bar("synthesising", total=60_000) as advance:
      for chunk in chunks:
        ...
        advance(len(chunk))

On a terminal the bar redraws in place; elsewhere (a log, a pipe) rich writes it once, finished.
Work that fails leaves no bar behind, so the error stays the only line on stderr.
"""

import contextlib


@contextlib.contextmanager
def bar(description: str, total: int, unit: str = ""):
  """A progress bar for `total` units of work; yields `advance(n=1)`."""
  from rich.console import Console
  from rich.progress import (BarColumn, Progress, TaskProgressColumn, TextColumn,
                             TimeElapsedColumn, TimeRemainingColumn)

  columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
             TextColumn(f"of {total:,} {unit}"), TimeElapsedColumn(), TextColumn("eta"),
             TimeRemainingColumn())
  console = Console(stderr=True)
  with Progress(*columns, console=console) as shown:
    task = shown.add_task(description, total=total)
    try:
      yield lambda n=1: shown.advance(task, n)
    except BaseException:
      # A failed command's stderr is its one error line: the bar must not draw itself on top.
      console.quiet = True
      raise
