"""Seed 000: "feed the output 8 and get a representative image of an 8", on mnist-mlp.

    python experiments/class_images.py [--restarts 32] [--seed 0] [--out runs/class_images]

Trains (or loads from --checkpoints) mnist-mlp (the seed's recipe), an independent CNN judge and
the VAE prior; then, for every digit at once:
  - the raw preset (seed 003's pixel ascent) and the natural preset (VAE latent), with quality
    metrics: source-model probability, CNN agreement, diversity, nearest training image, TV;
  - seed 000's M-matrix method against direct input optimisation (same optimiser, same key);
  - all 256 units of the first hidden layer maximised in one call, as a 16x16 grid.
Writes raw.png, natural.png, m_matrix.png, hidden1_units.png and metrics.json under --out, and
prints the quality table.
"""

from pathlib import Path

import jax.numpy as jnp
import numpy as np

import common
from jinvert import data, objectives, parameterizations, plots, presets


def main():
  parser = common.parser(__doc__, "runs/class_images", restarts=32)
  args = parser.parse_args()
  out = Path(args.out)
  targets = np.arange(10)

  apply_fn, params, meta = common.classifier("mnist-mlp", "mnist", args.checkpoints, 0, args.data_dir)
  judge, judge_meta = common.judge("mnist", args.checkpoints, args.data_dir)
  vae = common.vae_prior("mnist", args.checkpoints, args.data_dir)
  train_images = data.load_dataset("mnist", args.data_dir).train_images

  rows, results = {}, {}
  for name, preset in (("raw", presets.raw()),
                       ("natural", presets.natural(*vae))):
    result, timing = common.run_preset(apply_fn, params, preset, targets, args.restarts, args.seed)
    rows[name] = common.quality(result, timing, targets, judge, train_images)
    results[name] = result
    plots.save_grid(out / f"{name}.png", result.inputs, targets,
                    f"mnist-mlp, {name} preset: {preset.objective.name}")

  raw = presets.raw()
  m_result, m_timing = common.run_preset(apply_fn, params, raw, targets, args.restarts, args.seed,
                                         parameterization=parameterizations.identity_times_m())
  m_matrix = {"max_abs_difference_from_direct": float(jnp.max(jnp.abs(m_result.inputs -
                                                                      results["raw"].inputs))),
              "seconds": m_timing["seconds"], "direct_seconds": rows["raw"]["seconds"]}
  plots.save_grid(out / "m_matrix.png", m_result.inputs[:, :8], targets,
                  "seed 000's M-matrix (x = I @ M): same images as direct optimisation")

  units, unit_timing = common.run_preset(
      apply_fn, params, presets.raw(steps=100), np.arange(256), 1, args.seed,
      objective=objectives.unit("hidden1_pre"))
  plots.save_grid(out / "hidden1_units.png", units.inputs, columns=16,
                  title="mnist-mlp hidden1: each of the 256 units maximised (pre-activation, raw preset)")

  report = {"model": meta, "judge": {"model": "cnn", "test_accuracy": judge_meta["test_accuracy"]},
            "restarts": args.restarts, "seed": args.seed, "presets": rows, "m_matrix": m_matrix,
            "hidden1_units": {"units": 256, **unit_timing}}
  common.write_json(out / "metrics.json", report)
  print(f"mnist-mlp (test accuracy {meta['test_accuracy']:.4f}), judge cnn "
        f"(test accuracy {judge_meta['test_accuracy']:.4f}), 10 digits x {args.restarts} restarts")
  print(common.table(rows))
  print(f"M-matrix vs direct: max |difference| {m_matrix['max_abs_difference_from_direct']:.3g}, "
        f"{m_matrix['seconds']:.3f} s vs {m_matrix['direct_seconds']:.3f} s")
  print(f"256 hidden1 units in one call: {unit_timing['seconds']:.3f} s "
        f"(compile {unit_timing['compile_seconds']:.2f} s); wrote {out}/")


if __name__ == "__main__":
  main()
