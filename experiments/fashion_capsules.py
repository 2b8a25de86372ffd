"""Filled capsules for Fashion-MNIST (issue 19, a prototype): data-free garments a person can read?

    python experiments/fashion_capsules.py [--restarts 32] [--seed 0] [--variants a,b]

Strokes draw digits, not garments (experiments/RESULTS.md, "Framed as the format frames a
digit"). Here each image of fashion-mlp is drawn by `parameterizations.capsules`: the union,
1 - prod(1 - fill), of filled capsules (a Bezier path swept by a Bezier radius), shaded by a
7 x 7 grid and framed as Fashion-MNIST frames a product (the longer side at 28 pixels). Every
variant is the capsules preset's first recipe otherwise (Adam 0.05, `presets._as_handwritten`,
120 steps), each image the surest of 5 (the preset since keeps the best of two recipes):
  capsules:  3 capsules of 4 control points, radii starting at 5 px, the target log-probability;
  soft:      capsules on log-softmax(outputs / 3) (`class_log_prob(temperature=3)`), a logit
             margin that keeps pulling once p is near 1;
  squashed:  soft, each axis squashed by U(0.6, 1) before the transforms;
  picked:    squashed, each start the teacher's surest of 64 random drawings of its target (ten
             calls, one per class; their compilation is not in the seconds);
  mirrored:  soft, the drawing joined with its left-right mirror image as inks join, the mirror's
             ink weighted by a learned sigmoid(g) from g = 2, 0.88 (garments are symmetric, shoes
             are not, and the optimiser chooses): the capsules preset's first recipe;
  mirrored-drawn: mirrored, robust to `presets._as_drawn` (jitter, scale, rotation and blur) in
             place of the elastic distortion.
Reports the teacher's worst class, how often each judge of experiments/readable_images.py reads
the images as their target (mean and worst class) and the residual judge per class; writes the
rows as JSON and a grid of the last variant's first 8 images a class.

Run with JINVERT_DATA set (the teacher and the judges learn from the data; the images never
read it).
"""

import jax
import jax.numpy as jnp
import numpy as np

import common
import readable_images
from jinvert import (engine, files, metrics, objectives, parameterizations, plots, presets,
                     transforms)

# each variant's ingredients besides the capsules
VARIANTS = {"capsules": (), "soft": ("soft",), "squashed": ("soft", "squashed"),
            "picked": ("soft", "squashed", "picked"), "mirrored": ("soft", "mirrored"),
            "mirrored-drawn": ("soft", "mirrored", "drawn")}


def squashed(low=0.6, axes=(-2, -1)):
  """Each spatial axis scaled about the centre by its own U(low, 1)."""
  def fn(key, x):
    scale = jax.random.uniform(key, (2,), x.dtype, minval=low, maxval=1.0)
    size = jnp.array([x.shape[a] for a in axes], x.dtype)
    return jax.image.scale_and_translate(x, x.shape, axes, scale, size / 2 * (1 - scale),
                                         "linear")
  return fn


def picked(teacher, parameterization, target, candidates=64):
  """`parameterization` started at the teacher's surest of `candidates` random drawings of
  `target`."""
  outputs = engine.outputs_only(teacher.apply_fn)

  def init(key, shape):
    latents = jax.vmap(lambda k: parameterization.init(k, shape))(jax.random.split(key, candidates))
    images = jax.vmap(parameterization.to_input)(latents)
    best = jnp.argmax(jax.nn.log_softmax(outputs(teacher.params, images))[:, target])
    return jax.tree.map(lambda leaf: leaf[best], latents)

  return parameterization._replace(init=init)


def run(teacher, variant, restarts, seed):
  """(images (10, R, 28, 28), min class p, seconds) of a variant."""
  ingredients = VARIANTS[variant]
  transform = (presets._as_drawn if "drawn" in ingredients else presets._as_handwritten)((-2, -1))
  if "squashed" in ingredients:
    transform = transforms.compose([squashed(), transform])
  objective = objectives.class_log_prob(temperature=3.0 if "soft" in ingredients else 1.0)
  drawing = parameterizations.capsules(mirror=2.0 if "mirrored" in ingredients else None, box=28.0)
  preset = presets.capsules(box=28.0, draws=5, narrow_draws=0)._replace(
      objective=objective, parameterization=drawing, transform=transform, score=None)
  calls = [(jnp.arange(10), preset)]
  if "picked" in ingredients:
    calls = [(jnp.array([c]), preset._replace(parameterization=picked(
        teacher, preset.parameterization, c))) for c in range(10)]
  results, seconds = [], 0.0
  for i, (targets, preset) in enumerate(calls):
    result, timing = common.run_preset(teacher.apply_fn, teacher.params, preset, targets,
                                       restarts, seed + i)
    results.append(result)
    seconds += timing["seconds"]
  outputs = jnp.concatenate([r.outputs for r in results])
  probs = jax.nn.softmax(outputs)[jnp.arange(10), :, jnp.arange(10)]
  images = np.concatenate([np.asarray(r.inputs) for r in results])
  return images, float(probs.mean(1).min()), seconds


def main():
  p = common.parser(__doc__, "runs/fashion_capsules.json", restarts=32)
  p.add_argument("--variants", default=",".join(VARIANTS), type=common.names(VARIANTS, "variant"),
                 help=f"of {', '.join(VARIANTS)} (all)")
  args = p.parse_args()
  teacher = common.teacher("fashion-mlp", "fashion-mnist", args.checkpoints, args.data_dir)
  judged = readable_images.judges("fashion-mnist", args.checkpoints, args.data_dir)
  rows = []
  for variant in args.variants:
    images, worst, seconds = run(teacher, variant, args.restarts, args.seed)
    row = {"variant": variant, "min_class_target_prob": worst, "seconds": round(seconds, 1)}
    per_class = {name: np.asarray(metrics.agreement(fn, params, images, jnp.arange(10)))
                 for name, (fn, params, _) in judged.items()}
    row |= {name: (float(read.mean()), float(read.min())) for name, read in per_class.items()}
    row["judge-resnet per class"] = per_class["judge-resnet"].tolist()
    rows.append(row)
    common.log(str(row))
  print("| variant | min class p | judge-cnn | judge-resnet | judge-resnet per class (0-9) | s |")
  print("|---|---|---|---|---|---|")
  for r in rows:
    per_class = " ".join(f"{a:.0%}".rstrip("%") for a in r["judge-resnet per class"])
    print(f"| {r['variant']} | {r['min_class_target_prob']:.5f} | {r['judge-cnn'][0]:.1%} / "
          f"{r['judge-cnn'][1]:.1%} | {r['judge-resnet'][0]:.1%} / {r['judge-resnet'][1]:.1%} | "
          f"{per_class} | {r['seconds']} |")
  common.write_json(args.out, rows)
  files.atomic_write_bytes(args.out.replace(".json", ".png"),
                           plots.grid_png(images[:, :8], list(range(10)), f"capsules: {variant}"))


if __name__ == "__main__":
  main()
