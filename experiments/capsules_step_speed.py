"""Times the capsules preset's search with the renderer and the resampling it ships, against
those they replaced, each alone and both, inside the engine.

    python experiments/capsules_step_speed.py [--restarts 96] [--rounds 3] [--checkpoints DIR]

fashion-mlp's 10 classes x --restarts lanes of the capsules preset's first recipe (120 steps,
elastic distortion and all), in rounds that alternate the four builds in one process, the lanes
split over a CPU device per core as `jinvert invert` splits them (`JAX_NUM_CPU_DEVICES=1` keeps
one). The builds replaced: the capsules' fill by autodiff through the minimum over every piece
(in place of `parameterizations._outside_nearest`), and the resampling by jax's
`map_coordinates`, a gather per corner (in place of `transforms._resample`'s one of rows).
Prints the seconds of every round (compilation apart), the medians, each build's ratio to the
reference, and how far its images are from the reference's.
"""

import argparse
import contextlib
import statistics
from unittest import mock

import jax
import jax.numpy as jnp

import common
from jinvert import devices, engine, presets, transforms


def fill_through_the_minimum(outside, pieces):
  """The capsules' distance as autodiff saw it before: every piece's, and their minimum."""
  return jnp.min(outside(pieces[:, :, None, None]), 1)


def resample_by_map_coordinates(x, matrix, axes, displacement=None):
  """`transforms._resample` as it was: jax's bilinear `map_coordinates`, edges repeated."""
  axes = tuple(a % x.ndim for a in axes)
  image = jnp.moveaxis(x, axes, (0, 1))
  h, w = image.shape[:2]
  source = transforms._sources(h, w, matrix, displacement, x.dtype)
  sample = jax.vmap(lambda plane: jax.scipy.ndimage.map_coordinates(
      plane, [source[0], source[1]], order=1, mode="nearest"), in_axes=-1, out_axes=-1)
  return jnp.moveaxis(sample(image.reshape(h, w, -1)).reshape(image.shape), (0, 1), axes)


BUILDS = {  # name: (the fill, the resampling); None keeps the shipped one
    "both replaced (reference)": (fill_through_the_minimum, resample_by_map_coordinates),
    "nearest piece": (None, resample_by_map_coordinates),
    "resampling by rows": (fill_through_the_minimum, None),
    "both (shipped)": (None, None)}


def search(clf, preset, restarts, seed, fill, resample):
  with contextlib.ExitStack() as patched:  # at work while the search is traced
    for module, new in (("parameterizations._outside_nearest", fill),
                        ("transforms._resample", resample)):
      if new is not None:
        patched.enter_context(mock.patch(f"jinvert.{module}", new))
    return engine.timed_invert(clf.apply_fn, clf.params, preset.objective, jnp.arange(10),
                               key=jax.random.key(seed), input_shape=clf.input_shape,
                               restarts=restarts, steps=preset.steps, optimizer=preset.optimizer,
                               parameterization=preset.parameterization,
                               transform=preset.transform)


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--restarts", type=int, default=96,
                 help="lanes per class (96: the preset's three draws of 32)")
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--checkpoints", default="checkpoints")
  p.add_argument("--data-dir", help="where fashion-mlp trains from when its checkpoint is missing")
  args = p.parse_args()
  devices.use_every_core()  # as the command line does, before JAX starts
  clf = common.teacher("fashion-mlp", "fashion-mnist", args.checkpoints, args.data_dir)
  preset = presets.build("capsules", clf.space)
  seconds, images = {name: [] for name in BUILDS}, {}
  for round_ in range(args.rounds):
    for name, (fill, resample) in BUILDS.items():
      result, timing = search(clf, preset, args.restarts, args.seed, fill, resample)
      seconds[name].append(timing["seconds"])
      images.setdefault(name, result.inputs)
    common.log(f"round {round_ + 1}: " + ", ".join(f"{name} {s[-1]:.1f} s"
                                                     for name, s in seconds.items()))
  reference = statistics.median(seconds["both replaced (reference)"])
  print(f"| build (10 x {args.restarts} lanes, {preset.steps} steps, {timing['devices']} "
        "devices) | s per round | median | reference / build | largest image difference |")
  print("|---|---|---|---|---|")
  for name, taken in seconds.items():
    gap = float(jnp.abs(images[name] - images["both replaced (reference)"]).max())
    print(f"| {name} | {' '.join(f'{s:.1f}' for s in taken)} | {statistics.median(taken):.1f} | "
          f"{reference / statistics.median(taken):.2f}x | {gap:.2g} |")


if __name__ == "__main__":
  main()
