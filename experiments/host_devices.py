"""One CPU device against one per core: the engine's speed and results, process by process.

    python experiments/host_devices.py [--sizes 1,32,256,1024] [--steps 200] [--pairs 4]

The device count is fixed when JAX starts, so each measurement is a fresh process: `--pairs`
times, one process with `JAX_NUM_CPU_DEVICES=1` and one with a device per core (what `jinvert`'s
command line asks for, `jinvert.devices.use_every_core`), in alternation so that a shared host's
drift touches both alike. Each process times the benchmark's workload (`jinvert bench`: mnist-mlp,
class logit, SGD, box; 10 targets x R restarts x S steps, lanes split over the devices by
`engine.lane_sharding`) at every size, median of 5 calls after a warm-up, and saves its images.
Prints each process's image-steps/s, the medians, their ratio, the slowest process of each kind,
and the largest image difference between the two device counts.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np

CHILD = """
import json, statistics, sys
import numpy as np
from jinvert import devices
devices.use_every_core()
import jax
from jinvert.bench import workload
from jinvert.timing import time_calls
sizes, steps, out = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
model = workload.subject("mnist-mlp")
params = model.params
rates, images = {}, {}
for r in sizes:
  fn, targets, keys = workload.workload(model, r, steps, jax.devices())
  compiled = fn.lower(params, targets, keys).compile()
  result, times = time_calls(compiled, (params, targets, keys), 5, warmup=True)
  rates[r] = 10 * r * steps / statistics.median(times)
  images[f"R{r}"] = np.asarray(result.inputs)
np.savez(out, **images)
print(json.dumps({"devices": len(jax.devices()), "rates": rates}))
"""


def run_child(sizes, steps, n_devices, out):
  env = dict(os.environ)
  env.pop("JAX_NUM_CPU_DEVICES", None)
  if n_devices == 1:
    env["JAX_NUM_CPU_DEVICES"] = "1"
  proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(sizes), str(steps), out],
                        capture_output=True, text=True, env=env, check=True)
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", default="1,32,256,1024", help="restart counts R (1,32,256,1024)")
  parser.add_argument("--steps", type=int, default=200, help="S (200)")
  parser.add_argument("--pairs", type=int, default=4, help="processes of each kind (4)")
  args = parser.parse_args()
  sizes = [int(s) for s in args.sizes.split(",")]
  runs = {"one": [], "every core": []}
  with tempfile.TemporaryDirectory() as tmp:
    outs = {"one": f"{tmp}/one.npz", "every core": f"{tmp}/every.npz"}
    for _ in range(args.pairs):
      for kind in runs:
        got = run_child(sizes, args.steps, 1 if kind == "one" else None, outs[kind])
        runs[kind].append(got)
        print(f"{kind} ({got['devices']} devices): " +
              ", ".join(f"R={r} {v:,.0f}" for r, v in got["rates"].items()), flush=True)
    one, every = np.load(outs["one"]), np.load(outs["every core"])
    differences = {r: float(np.max(np.abs(one[f"R{r}"] - every[f"R{r}"]))) for r in sizes}
  n = runs["every core"][0]["devices"]
  print(f"\nimage-steps/s over {args.pairs} processes each, S = {args.steps} (median; slowest):")
  print(f"| R | 1 device | {n} devices | ratio of medians | slowest, 1 / {n} | max |image difference| |")
  print("|---|---|---|---|---|---|")
  for r in sizes:
    a = [got["rates"][str(r)] for got in runs["one"]]
    b = [got["rates"][str(r)] for got in runs["every core"]]
    print(f"| {r} | {statistics.median(a):,.0f} | {statistics.median(b):,.0f} | "
          f"{statistics.median(b) / statistics.median(a):.2f}x | {min(a):,.0f} / {min(b):,.0f} | "
          f"{differences[r]:.2g} |")


if __name__ == "__main__":
  main()
