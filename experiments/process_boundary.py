"""What the process boundary costs: one process with 2 CPU devices against 2 processes with one
each (gloo between them), on the same host, the same commands, interleaved.

Rows: `jinvert invert` at R restarts (image-steps/s of the compiled calls), `distill`'s
synthesis (images/s) and its student training (ms a step: data parallel across processes, one
device within one), and the collectives behind them timed alone in 2 processes: the all-reduce
of a student's gradient (every training step) and the all-gather of a synthesis chunk's images
(once a chunk). The tables go in experiments/BENCHMARKS.md ("More than one process").

    python experiments/process_boundary.py --checkpoint checkpoints/mnist-mlp-mnist-s0.msgpack
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

MLP_PARAMS = 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10  # the mnist-mlp student


def _port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _jinvert(argv, processes: int, folder) -> dict:
  """Runs `jinvert argv` as 1 process on 2 devices, or as 2 processes on 1; process 0's JSON."""
  command = [sys.executable, "-m", "jinvert", *map(str, argv)]
  if processes == 1:
    env = dict(os.environ, JAX_NUM_CPU_DEVICES="2")
    return json.loads(subprocess.run(command, env=env, cwd=folder, check=True,
                                     capture_output=True, text=True).stdout.splitlines()[-1])
  port, env = _port(), dict(os.environ, JAX_NUM_CPU_DEVICES="1")
  procs = [subprocess.Popen([*command, "--coordinator", f"127.0.0.1:{port}", "--num-processes",
                             "2", "--process-id", str(i)], env=env, cwd=folder,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  outs = [p.communicate() for p in procs]
  if any(p.returncode for p in procs):
    raise SystemExit(f"a process failed: {[o[1][-500:] for o in outs]}")
  return json.loads(outs[0][0].splitlines()[-1])


def _collectives(process: int, port: int, repeats: int):
  """In each of 2 processes: ms per all-reduce of a gradient, and per all-gather of images."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  jax.config.update("jax_num_cpu_devices", 1)
  jax.distributed.initialize(f"127.0.0.1:{port}", 2, process)
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("p",))
  spread = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("p"))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  rows = {}
  for name, shape in (("all-reduce of mnist-mlp's gradient", (2, MLP_PARAMS)),
                      ("all-gather of 600 28x28 images", (2, 300 * 784)),
                      ("all-gather of 6,000 28x28 images", (2, 3000 * 784))):
    x = jax.make_array_from_callback(shape, spread, lambda i: np.ones((1, shape[1]), np.float32))
    op = jax.jit((lambda a: jnp.sum(a, 0)) if "reduce" in name else (lambda a: a),
                 out_shardings=replicated)
    op(x).block_until_ready()
    times = []
    for _ in range(repeats):
      t = time.perf_counter()
      op(x).block_until_ready()
      times.append(time.perf_counter() - t)
    rows[name] = (4 * shape[1] * (1 if "reduce" in name else 2), 1e3 * statistics.median(times))
  if process == 0:
    print(json.dumps(rows))


def _collective_rows(repeats: int) -> dict:
  port = _port()
  env = dict(os.environ, JAX_NUM_CPU_DEVICES="1")
  procs = [subprocess.Popen([sys.executable, __file__, "--collectives", str(i), "--port",
                             str(port), "--repeats", str(repeats)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  outs = [p.communicate() for p in procs]
  return json.loads(outs[0][0].splitlines()[-1])


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--checkpoint", help="a trained mnist-mlp checkpoint (the teacher)")
  p.add_argument("--restarts", type=int, default=256)
  p.add_argument("--steps", type=int, default=200)
  p.add_argument("--images", type=int, default=6000, help="distill's transfer images")
  p.add_argument("--student-steps", type=int, default=1200)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--collectives", type=int, help=argparse.SUPPRESS)
  p.add_argument("--port", type=int, help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.collectives is not None:
    return _collectives(args.collectives, args.port, 50)
  if args.checkpoint is None:
    p.error("--checkpoint is required")
  checkpoint = os.path.abspath(args.checkpoint)
  rows = {k: {1: [], 2: []} for k in ("invert", "synthesis", "training")}
  with tempfile.TemporaryDirectory() as folder:
    for _ in range(args.repeats):
      for processes in (1, 2):  # interleaved: a drifting host touches both alike
        run = _jinvert(["invert", checkpoint, "--preset", "raw", "--targets", "0-9",
                        "--restarts", args.restarts, "--steps", args.steps, "--out", "i.npz"],
                       processes, folder)
        rows["invert"][processes].append(10 * args.restarts * args.steps / run["seconds"])
        run = _jinvert(["distill", checkpoint, "--student", "mnist-mlp", "--images", args.images,
                        "--steps", args.student_steps, "--out", "s.msgpack"], processes, folder)
        rows["synthesis"][processes].append(args.images / run["synth_seconds"])
        rows["training"][processes].append(1e3 * run["train_seconds"] / args.student_steps)
  units = {"invert": f"image-steps/s (R = {args.restarts}, S = {args.steps})",
           "synthesis": f"images/s ({args.images:,} images, data-free)",
           "training": f"ms a student step ({args.student_steps:,} steps, with compilation)"}
  print("| work | 1 process x 2 devices | 2 processes x 1 device | 2 processes / 1 |")
  print("|---|---|---|---|")
  for name, by in rows.items():
    one, two = statistics.median(by[1]), statistics.median(by[2])
    print(f"| {name}: {units[name]} | {one:,.1f} | {two:,.1f} | {two / one:.2f}x |")
  print()
  print("| collective, 2 processes (gloo, one host) | bytes | ms (median of 50) |")
  print("|---|---|---|")
  for name, (size, ms) in _collective_rows(args.repeats).items():
    print(f"| {name} | {size:,} | {ms:.3f} |")


if __name__ == "__main__":
  main()
