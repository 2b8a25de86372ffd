"""The `jinvert` command line: the parser, and the boundary between the user and the library.

A command is a module here: `add(subparsers)` declares its arguments and `run(args)` does the
work, returning the JSON summary. Every `run` follows the same order: check every argument, load
and check every input, declare every output (`jinvert.files.Outputs`), and only then work; the
outputs are written together at the end. The command line's own helpers live beside them
(`arguments`, `inputs`, `progress`, `results`); the library never imports this package.

Each command's last stdout line is one JSON object (strict JSON: never NaN). Every failure is one
line on stderr, no traceback:
  exit 2  bad input, or a resource the machine lacks (a file it cannot write, memory, disk);
  exit 1  a bug in jinvert: the line names the exception and asks for a rerun with --debug
          (or JINVERT_DEBUG=1), which shows the traceback;
  exit 130 interrupted (Ctrl-C); nothing is half-written.
Warnings raised while a command runs are printed, one line each, only when it succeeds.
JAX gets one CPU device per core (`jinvert.devices`; `JAX_NUM_CPU_DEVICES=1` keeps one).
With `--coordinator`/`--num-processes`/`--process-id` a command is one process of several
(`cluster`): only process 0 prints its JSON line (which gains `processes`) and writes.
"""

import argparse
import errno
import json
import os
import signal
import sys
import warnings

from jinvert.errors import JinvertError

_DEBUG_HELP = "show the traceback of an unexpected error (also JINVERT_DEBUG=1)"


class _Parser(argparse.ArgumentParser):
  """argparse, but a usage error is one line on stderr and exit code 2."""

  def error(self, message):
    sys.stderr.write(f"{self.prog}: error: {' '.join(message.split())}\n")
    raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
  from jinvert.cli import bench, distill, generate, invert, layers, reconstruct, train

  parser = _Parser(prog="jinvert", description="Invert trained neural networks with JAX.")
  parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
  commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                   parser_class=_Parser)
  for command in (train, invert, layers, reconstruct, generate, distill, bench):
    command.add(commands)
  for sub in commands.choices.values():
    sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
  return parser


def _one_line(text) -> str:
  return " ".join(str(text).split())


def _out_of_memory(e: BaseException) -> bool:
  text = str(e)
  return isinstance(e, MemoryError) or (
      type(e).__name__ in ("XlaRuntimeError", "JaxRuntimeError")
      and ("RESOURCE_EXHAUSTED" in text or "Out of memory" in text or "OOM" in text))


def _lost_peer(e: BaseException) -> bool:
  """A collective that failed because another process is gone (jax raises it as its runtime
  error, or as a ValueError from `multihost_utils`)."""
  text = str(e)
  return ("Gloo" in text and "failed" in text) or "Connection closed by peer" in text


def failure(e: BaseException, debug: bool) -> tuple:
  """(exit code, one-line message) for an exception that ended a command."""
  if isinstance(e, JinvertError):
    return 2, _one_line(e)
  if isinstance(e, KeyboardInterrupt):
    return 130, "interrupted; no output was written"
  if _lost_peer(e):
    return 2, _one_line(f"lost contact with another process of the run ({str(e)[:200]}); it "
                        "died or was killed, so this one stops")
  if _out_of_memory(e):
    first = _one_line(str(e).splitlines()[0] if str(e) else type(e).__name__)[:160]
    return 2, (f"out of memory ({first}); use fewer restarts, steps, samples or targets, or "
               "set JINVERT_MEMORY_LIMIT to what this machine can spare")
  if isinstance(e, OSError):
    where = f"{e.filename}: " if e.filename else ""
    hint = {errno.ENOSPC: " (the disk is full)", errno.EDQUOT: " (over the disk quota)",
            errno.EMFILE: " (too many open files)"}.get(e.errno, "")
    return 2, _one_line(f"{where}{e.strerror or e}{hint}")
  return 1, _one_line(f"internal error: {type(e).__name__}: {str(e)[:200]}. This is a bug in "
                      "jinvert: rerun with --debug (or JINVERT_DEBUG=1) for the traceback, and "
                      "please report it")


def _interrupted(signum, frame):
  """Ctrl-C: one line, and exit 130 at once, wherever the main thread is. A KeyboardInterrupt
  can land where Python ignores it (in jax's garbage-collection callback: the run went on, and
  a test waited 60 s) or escape `main` with a traceback (during the imports); and Python's
  shutdown, after an interrupt, can touch the XLA client while work the interrupt left running
  on XLA's threads still uses it (a segfault in 2 of 12 interrupted `distill` runs)."""
  command = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
  os.write(2, f"jinvert{' ' + command if command else ''}: error: interrupted; no output was "
              "written\n".encode())
  os._exit(130)


def entry():
  """The `jinvert` program: `main`, then exit. Ctrl-C ends it at once (`_interrupted`); outputs
  are never half-written: they are committed with SIGINT held (`jinvert.files`)."""
  signal.signal(signal.SIGINT, _interrupted)
  code = main()
  if code == 130:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
  sys.exit(code)


def main(argv=None) -> int:
  try:
    args = build_parser().parse_args(argv)
  except SystemExit as e:  # a usage error (its line is written) or --help
    return e.code if isinstance(e.code, int) else 2
  debug = getattr(args, "debug", False) or os.environ.get("JINVERT_DEBUG") == "1"
  from jinvert.cli import cluster
  several = cluster.requested(args)
  if several and not cluster.is_child():
    return cluster.supervise(sys.argv[1:] if argv is None else list(argv), args, debug)
  from jinvert import devices
  devices.use_every_core()  # one CPU device per core, before JAX starts: lanes split over them
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
      if several:
        cluster.join(args)
      summary = args.run(args)
      if hasattr(args, "coordinator"):
        import jax
        summary["processes"] = jax.process_count()
        if jax.process_index() != 0:
          return 0  # process 0 reports
      line = json.dumps(summary, allow_nan=False)
    except (Exception, KeyboardInterrupt) as e:
      code, message = failure(e, debug)
      if debug and code == 1:
        raise
      where = f"{cluster.who(args)}: " if several else ""
      sys.stderr.write(f"jinvert {args.command}: error: {where}{message}\n")
      if several:  # at once: the runtime's shutdown would wait for the others, then abort
        sys.stderr.flush()
        os._exit(code)
      return code
  # "always" catches every repeat (torch warns once per compiled step): each is said once
  for message in dict.fromkeys(_one_line(w.message) for w in caught):
    sys.stderr.write(f"jinvert {args.command}: warning: {message}\n")
  print(line)
  return 0
