"""Many processes, one mesh: jinvert's lanes split over every device of every process.

JAX's multi-controller runtime runs the same program in each process
(`jax.distributed.initialize`); `jax.devices()` then lists every process's devices, and the
engine's lane sharding (`engine.lane_sharding`) spans them all. Lanes are independent, so a
process never waits on another until the results are gathered (`gathered`): every process then
holds the whole result, and process 0 (`is_writer`) writes it.

On the CPU the collectives go over TCP (gloo, JAX's default since 0.5.1), so two processes on
one host are the smallest cluster, and what the tests start:

    jinvert invert MODEL --coordinator 127.0.0.1:4321 --num-processes 2 --process-id 0 ... &
    jinvert invert MODEL --coordinator 127.0.0.1:4321 --num-processes 2 --process-id 1 ...

A process that stops sending heartbeats for `HEARTBEAT_SECONDS` is declared dead by the
coordinator, and every other process stops (the command line turns that into one line).
"""

import socket
import time

import jax
import numpy as np

from jinvert.errors import JinvertError

HEARTBEAT_SECONDS = 10  # a dead peer is noticed within this (jax's default is 100)


def parse_address(text: str) -> tuple:
  """`HOST:PORT` -> (host, port), checked."""
  host, sep, port = str(text).rpartition(":")
  if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise JinvertError(f"--coordinator: write HOST:PORT (e.g. 10.0.0.1:4321), got {text!r}")
  return host.strip("[]"), int(port)


def wait_for(address: str, timeout: float):
  """Returns once `address` accepts a TCP connection; a JinvertError after `timeout` seconds.

  The coordinator (process 0) must be listening before another process registers: found here,
  a missing coordinator is one clear line instead of an abort inside the runtime.
  """
  host, port = parse_address(address)
  deadline = time.monotonic() + timeout
  while True:
    try:
      with socket.create_connection((host, port), timeout=min(5.0, timeout)):
        return
    except OSError as e:
      why = e.strerror or type(e).__name__
    if time.monotonic() >= deadline:
      raise JinvertError(f"cannot reach the coordinator {address} (process 0) within "
                         f"{timeout:g} s: {why}; is process 0 running, and the port open?")
    time.sleep(0.25)


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, auto: bool = False, timeout: float = 60):
  """Joins this process to a multi-process run (`jax.distributed.initialize`), before any JAX
  computation.

  Args:
    coordinator, num_processes, process_id: as `jax.distributed.initialize` takes them; process
      0 serves the coordinator at `coordinator`'s port.
    auto: let JAX detect the cluster (SLURM, Open MPI, Kubernetes, TPU pods) instead.
    timeout: seconds to wait for the coordinator and for every process to join.

  Raises:
    JinvertError: arguments that do not describe a run, or a coordinator that cannot be reached.
  """
  kwargs = dict(initialization_timeout=int(timeout), heartbeat_timeout_seconds=HEARTBEAT_SECONDS)
  if auto:
    try:
      jax.distributed.initialize(**kwargs)
    except ValueError as e:  # no cluster found in the environment
      raise JinvertError(f"--distributed auto: no cluster detected ({e}); give --coordinator, "
                         "--num-processes and --process-id") from None
    return
  if None in (coordinator, num_processes, process_id):
    raise JinvertError("a multi-process run needs --coordinator HOST:PORT, --num-processes N and "
                       "--process-id I together (or --distributed auto)")
  parse_address(coordinator)
  if not 0 <= process_id < num_processes:
    raise JinvertError(f"--process-id must be from 0 to {num_processes - 1} (--num-processes "
                       f"{num_processes}), got {process_id}")
  if process_id != 0:
    wait_for(coordinator, timeout)
  jax.distributed.initialize(coordinator, num_processes, process_id, **kwargs)


def is_writer() -> bool:
  """True in the one process that writes results: process 0 (every process of a single run)."""
  return jax.process_index() == 0


def gathered(tree):
  """`tree` with every array that spans several processes gathered to numpy on every process
  (a collective: every process must call it); other leaves as they are."""
  from jax.experimental import multihost_utils
  leaves = jax.tree.leaves(tree)
  if all(not isinstance(a, jax.Array) or a.is_fully_addressable for a in leaves):
    return tree
  return jax.tree.map(
      lambda a: np.asarray(multihost_utils.process_allgather(a, tiled=True))
      if isinstance(a, jax.Array) and not a.is_fully_addressable else a, tree)


def from_process_0(data: bytes | None) -> bytes | None:
  """Process 0's `data` (bytes, or None) on every process (a collective: every process calls
  it; the others' `data` is ignored). A work dir then lives on process 0's machine alone."""
  from jax.experimental import multihost_utils
  if jax.process_count() == 1:
    return data
  mine = jax.process_index() == 0
  size = int(multihost_utils.broadcast_one_to_all(np.int32(len(data) if mine and data is not None
                                                           else -1)))
  if size < 0:
    return None
  buffer = np.frombuffer(data, np.uint8) if mine else np.zeros(size, np.uint8)
  return np.asarray(multihost_utils.broadcast_one_to_all(buffer)).tobytes()
