"""mnist-cnn (jinvert's CNN with BatchNorm) under every preset: raw, natural and data-free.

    python experiments/cnn_presets.py [--restarts 32] [--seed 0] [--out runs/cnn_presets]

Trains (or loads from --checkpoints) mnist-cnn (conv-pool-conv-pool-dense, BatchNorm), the
independent judge CNN and the VAE prior; inverts every digit with each preset in one compiled
call, and prints the quality table (target probability, the judge's agreement, diversity,
distance to the nearest training image, total variation). Writes a PNG per preset and
metrics.json under --out.
"""

from pathlib import Path

import numpy as np

import common
from jinvert import data, plots, presets


def main():
  args = common.parser(__doc__, "runs/cnn_presets", restarts=32).parse_args()
  out = Path(args.out)
  targets = np.arange(10)
  apply_fn, params, meta = common.classifier("mnist-cnn", "mnist", args.checkpoints, 0, args.data_dir)
  judge, judge_meta = common.judge("mnist", args.checkpoints, args.data_dir)
  vae = common.vae_prior("mnist", args.checkpoints, args.data_dir)
  train_images = data.load_dataset("mnist", args.data_dir).train_images
  rows = {}
  for name, preset in (("raw", presets.raw()),
                       ("natural (uses data)", presets.natural(*vae)),
                       ("data-free", presets.data_free())):
    result, timing = common.run_preset(apply_fn, params, preset, targets, args.restarts, args.seed)
    rows[name] = common.quality(result, timing, targets, judge, train_images)
    plots.save_grid(out / f"{name.split()[0]}.png", result.inputs, targets,
                    f"mnist-cnn, {name}: {preset.objective.name}")
  common.write_json(out / "metrics.json", {"model": meta, "judge": {
      "model": "cnn", "test_accuracy": judge_meta["test_accuracy"]}, "restarts": args.restarts,
      "presets": rows})
  print(f"mnist-cnn (test accuracy {meta['test_accuracy']:.4f}), judge cnn (test accuracy "
        f"{judge_meta['test_accuracy']:.4f}), 10 digits x {args.restarts} restarts")
  print(common.table(rows))


if __name__ == "__main__":
  main()
