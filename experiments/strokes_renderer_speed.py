"""Times the strokes renderer's gradient two ways: the one it ships, written out from the
nearest piece of each pixel, against autodiff through the same drawing (a minimum over pieces
and a product over strokes); for the pen the strokes preset draws with (four strokes of six
control points, framed in MNIST's 20-pixel box) or `strokes`' default one.

    python experiments/strokes_renderer_speed.py [--images 640] [--repeats 10] [--pen default]

Prints a table (milliseconds per call after compilation, median of repeats, for `--images`
images at once, as `invert` runs them), the ratio, and how far the two gradients differ.
"""

import argparse
import statistics
import time
from unittest import mock

import jax
import jax.numpy as jnp

from jinvert import data, parameterizations, presets


class _without_custom_gradient:
  """Stands in for jax.custom_vjp: calls the function, ignores the gradient given to it."""
  def __init__(self, fun):
    self.fun = fun

  def __call__(self, *args):
    return self.fun(*args)

  def defvjp(self, forward, backward):
    pass


# each built again while jax.custom_vjp is a no-op, so the preset's pen is asked of the preset
PENS = {"preset": lambda shape: presets.strokes(
            shape, box=data.DATASETS["mnist"].box).parameterization,
        "default": lambda shape: parameterizations.strokes(shape)}


def median_ms(fn, args, repeats):
  jax.block_until_ready(fn(*args))  # compiles
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(1e3 * (time.perf_counter() - start))
  return statistics.median(times)


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--images", type=int, default=640,
                 help="images drawn at once (640: 10 classes x 32 restarts x 2 draws)")
  p.add_argument("--repeats", type=int, default=10)
  p.add_argument("--pen", choices=sorted(PENS), default="preset",
                 help="preset: the strokes preset's (six control points, MNIST's box); default: "
                      "strokes' defaults (four control points, unframed)")
  args = p.parse_args()
  shape = (28, 28)
  strokes = PENS[args.pen](shape)
  keys = jax.random.split(jax.random.key(0), args.images)
  latents = jax.vmap(lambda k: strokes.init(k, shape))(keys)
  weights = jax.random.normal(jax.random.key(1), (args.images, *shape))
  draw = strokes.to_input
  # the same drawing, built while jax.custom_vjp is a no-op: autodiff through its forward pass
  with mock.patch.object(jax, "custom_vjp", _without_custom_gradient):
    autodiff = PENS[args.pen](shape).to_input
  rows = {}
  for name, to_input in (("written out (shipped)", draw), ("autodiff", autodiff)):
    images = jax.jit(jax.vmap(to_input))
    grad = jax.jit(jax.grad(lambda z, f=to_input: jnp.sum(weights * jax.vmap(f)(z))))
    rows[name] = (median_ms(images, (latents,), args.repeats),
                  median_ms(grad, (latents,), args.repeats), grad(latents))
  print(f"| renderer ({args.images} images, {strokes.name}) | image ms | image + gradient ms |")
  print("|---|---|---|")
  for name, (forward, backward, _) in rows.items():
    print(f"| {name} | {forward:.1f} | {backward:.1f} |")
  (_, shipped, g1), (_, reference, g2) = rows.values()
  gap = max(float(jnp.abs(a - b).max() / jnp.abs(b).max())
            for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)))
  print(f"\nautodiff / written out: {reference / shipped:.1f}x; gradients differ by at most "
        f"{gap:.1e} of their largest entry")


if __name__ == "__main__":
  main()
