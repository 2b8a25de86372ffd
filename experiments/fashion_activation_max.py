"""Seed 003: find the input that maximises one output of the Keras Fashion-MNIST model.

    python experiments/fashion_activation_max.py [--restarts 32] [--seed 0] [--out runs/fashion]

Trains (or loads) fashion-mlp (Flatten-Dense(128, relu)-Dense(10)), an independent CNN judge and
a VAE prior on Fashion-MNIST, then inverts all 10 classes at once:
  - unconstrained: the seed's gradient ascent exactly, pixels free to leave [0, 1];
  - raw: the same, projected onto the box [0, 1] after every step (the asked-for constraint);
  - natural: the natural preset (VAE latent, jitter and blur robustness).
Writes unconstrained.png, raw.png, natural.png and metrics.json under --out and prints the
quality table (unconstrained images are clipped to [0, 1] before they are judged or shown, as
the seed's answer suggests for display).
"""

from pathlib import Path

import jax.numpy as jnp
import numpy as np

import common
from jinvert import data, parameterizations, plots, presets

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot")


def main():
  parser = common.parser(__doc__, "runs/fashion", restarts=32)
  args = parser.parse_args()
  out = Path(args.out)
  targets = np.arange(10)

  apply_fn, params, meta = common.classifier("fashion-mlp", "fashion-mnist", args.checkpoints, 0,
                                             args.data_dir)
  judge, judge_meta = common.judge("fashion-mnist", args.checkpoints, args.data_dir)
  vae = common.vae_prior("fashion-mnist", args.checkpoints, args.data_dir)
  train_images = data.load_dataset("fashion-mnist", args.data_dir).train_images

  runs = {
      "unconstrained": (presets.raw(), {"parameterization": parameterizations.pixels(constrain=False)}),
      "raw": (presets.raw(), {}),
      "natural": (presets.natural(*vae), {}),
  }
  rows = {}
  for name, (preset, overrides) in runs.items():
    result, timing = common.run_preset(apply_fn, params, preset, targets, args.restarts, args.seed,
                                       **overrides)
    if name == "unconstrained":
      rows["unconstrained (range)"] = {"min": float(result.inputs.min()), "max": float(result.inputs.max())}
      result = result._replace(inputs=jnp.clip(result.inputs, 0.0, 1.0))
    rows[name] = common.quality(result, timing, targets, judge, train_images)
    plots.save_grid(out / f"{name}.png", result.inputs, CLASSES,
                    f"fashion-mlp, {name}: {preset.objective.name}")

  span = rows.pop("unconstrained (range)")
  report = {"model": meta, "judge": {"model": "cnn", "test_accuracy": judge_meta["test_accuracy"]},
            "restarts": args.restarts, "seed": args.seed, "presets": rows,
            "unconstrained_pixel_range": span, "classes": CLASSES}
  common.write_json(out / "metrics.json", report)
  print(f"fashion-mlp (test accuracy {meta['test_accuracy']:.4f}), judge cnn "
        f"(test accuracy {judge_meta['test_accuracy']:.4f}), 10 classes x {args.restarts} restarts")
  print(common.table(rows))
  print(f"unconstrained pixels ranged over [{span['min']:.2f}, {span['max']:.2f}]; wrote {out}/")


if __name__ == "__main__":
  main()
