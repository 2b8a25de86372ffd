"""One command, many processes: the flags that join a run, and the supervisor that keeps its
failures to one line.

`--coordinator HOST:PORT --num-processes N --process-id I` (or `--distributed auto`, or
JINVERT_DISTRIBUTED=auto) make the command one process of N (`jinvert.distributed`). Every
process runs the same command; process 0 prints the JSON line and writes the outputs.

JAX's runtime ends a process whose peer died with an abort and pages of C++ log. So a process
of a multi-process run works in a child (this same command, JINVERT_CLUSTER_CHILD=1) whose
stderr is read here: jinvert's own lines pass, the runtime's log is kept back, and if the child
dies without saying why, one line is made from that log (`diagnosis`). The child dies with its
supervisor (Linux's parent-death signal), so killing either stops the process.
"""

import os
import re
import signal
import subprocess
import sys
import threading

from jinvert.cli import arguments

CHILD = "JINVERT_CLUSTER_CHILD"
JOIN_SECONDS = 60  # to reach the coordinator, and for every process to join


def add(p):
  g = p.add_argument_group("more than one process (jax.distributed; see README)")
  g.add_argument("--coordinator", metavar="HOST:PORT",
                 help="process 0's address: it serves the coordinator there, the others join it")
  g.add_argument("--num-processes", type=arguments.count, metavar="N",
                 help="processes in the run, each with its own devices")
  g.add_argument("--process-id", type=int, metavar="I", help="this process, from 0 to N - 1")
  g.add_argument("--distributed", choices=("auto",),
                 help="auto: let JAX detect the cluster (SLURM, Open MPI, Kubernetes, TPU pods); "
                      "also JINVERT_DISTRIBUTED=auto")


def _auto(args) -> bool:
  return args.distributed == "auto" or os.environ.get("JINVERT_DISTRIBUTED") == "auto"


def requested(args) -> bool:
  """True when the command is one process of several."""
  return hasattr(args, "coordinator") and (
      _auto(args) or any(v is not None for v in (args.coordinator, args.num_processes,
                                                 args.process_id)))


def is_child() -> bool:
  return os.environ.get(CHILD) == "1"


def join(args):
  """Joins the run (in the child), before any JAX work."""
  from jinvert import distributed
  distributed.initialize(args.coordinator, args.num_processes, args.process_id,
                         auto=_auto(args), timeout=JOIN_SECONDS)


def who(args) -> str:
  """`process I of N`, as the flags say (the runtime may not have started)."""
  if args.process_id is not None and args.num_processes is not None:
    return f"process {args.process_id} of {args.num_processes}"
  return "this process"


# the runtime's own log: glog lines, stack frames, check failures, gloo's notes
_RUNTIME_LINE = re.compile(r"^([IWEF]\d{4} |\s+@ |\*\*\* |\[Gloo\]|RPC: |Additional GRPC|:UNKNOWN)")


def diagnosis(log: str, coordinator: str | None) -> str:
  """What the runtime's log says happened, in a line."""
  text = " ".join(log.split())
  dead = re.search(r"stopped sending heartbeats\):? ([\d ,]+)", text) or \
      re.search(r"Task (\d+) heartbeat timeout", text)
  where = coordinator or "the coordinator"
  if dead:
    ids = ", ".join(dict.fromkeys(re.findall(r"\d+", dead.group(1))))
    return (f"process {ids} stopped responding (no heartbeat for "
            f"{_heartbeat()} s); it died or was killed, so this one stops too")
  if "RegisterTask" in text or "barrier timed out" in text.lower():
    return (f"not every process joined {where} within {JOIN_SECONDS} s; start all "
            "--num-processes of them with the same --coordinator")
  if "PollForError" in text or "Socket closed" in text or "failed to connect" in text.lower():
    return f"lost the coordinator {where} (process 0): it died or was killed, so this one stops"
  fatal = next((line for line in log.splitlines() if line.startswith("F")), "")
  reason = " ".join(fatal.split())[:200] or "no reason given"
  return f"the JAX runtime stopped this process ({reason})"


def _heartbeat() -> int:
  from jinvert.distributed import HEARTBEAT_SECONDS
  return HEARTBEAT_SECONDS


def _die_with_parent():
  """In the child, before exec: SIGKILL when the supervisor dies (Linux's PR_SET_PDEATHSIG)."""
  try:
    import ctypes
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)
  except (OSError, AttributeError):  # not Linux: the child outlives a killed supervisor
    pass


def _copy(source, sink, debug: bool):
  with source:
    for raw in source:
      line = raw.decode(errors="replace")
      if debug or not _RUNTIME_LINE.match(line):
        sink.write(line)
        sink.flush()


def supervise(argv: list, args, debug: bool) -> int:
  """Runs this command as the child, passing its stdout and jinvert's stderr lines; returns its
  exit code, after one line of its own if the child died without one."""
  env = dict(os.environ, **{CHILD: "1"})
  child = subprocess.Popen([sys.executable, "-m", "jinvert", *argv], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=env, preexec_fn=_die_with_parent)
  # gloo greets on stdout, which holds nothing but the JSON line
  out = threading.Thread(target=_copy, args=(child.stdout, sys.stdout, debug), daemon=True)
  out.start()
  said, kept = False, []
  with child.stderr:
    for raw in child.stderr:
      line = raw.decode(errors="replace")
      if debug or line.startswith("jinvert"):
        sys.stderr.write(line)
        sys.stderr.flush()
        said = said or ": error: " in line
      elif _RUNTIME_LINE.match(line) or kept:  # a record and its continuation lines
        kept.append(line)
  code = child.wait()
  out.join()
  if code == 0 or said:
    return code if code >= 0 else 2
  why = diagnosis("".join(kept), args.coordinator)
  sys.stderr.write(f"jinvert {args.command}: error: {who(args)}: {why}\n")
  return 2
