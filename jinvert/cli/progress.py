"""Progress bars on stderr for long work, with `rich` (a flax dependency).

    with progress.bar("synthesising", total=60_000) as advance:
      for chunk in chunks:
        ...
        advance(len(chunk))

On a terminal the bar redraws in place and is erased when the work ends, so that stderr holds
only what a command has to say (a failure is its one error line); elsewhere (a log, a pipe)
nothing is drawn: the JSON line reports the seconds.
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
  # off a terminal even a transient bar ends with a bare newline: nothing is drawn there
  with Progress(*columns, console=console, transient=True,
                disable=not console.is_terminal) as shown:
    task = shown.add_task(description, total=total)
    try:
      yield lambda n=1: shown.advance(task, n)
    except BaseException:
      console.quiet = True  # not even the last frame above the error line
      raise
