"""The measurements that chose the `natural` preset: a sweep over its knobs on mnist-mlp.

    python experiments/natural_preset_sweep.py [--restarts 32] [--out runs/natural_sweep.json]

Each row optimises the VAE latent for all 10 digits x R restarts and reports the source model's
probability, the independent CNN's agreement, diversity and nearest-training-image distance.
"""


import numpy as np
import optax

import common
from jinvert import data, metrics, objectives, parameterizations, presets, transforms


def main():
  parser = common.parser(__doc__, "runs/natural_sweep.json", restarts=32)
  parser.add_argument("--dataset", default="mnist", choices=("mnist", "fashion-mnist"))
  args = parser.parse_args()
  model = "mnist-mlp" if args.dataset == "mnist" else "fashion-mlp"
  apply_fn, params, _ = common.classifier(model, args.dataset, args.checkpoints, 0, args.data_dir)
  judge_fn, judge_params, _ = common.classifier("cnn", args.dataset, args.checkpoints, 0,
                                                args.data_dir)
  vae, vae_params = common.vae_prior(args.dataset, args.checkpoints, args.data_dir)
  decode = presets.vae_decode_fn(vae, vae_params)
  ds = data.load_dataset(args.dataset, args.data_dir)
  judge = (lambda p, x: judge_fn(p, x)[0], judge_params)
  targets = np.arange(10)

  robustness = {"none": None, "jitter": transforms.jitter(2),
                "jitter+blur": transforms.compose([transforms.jitter(2), transforms.blur(1.0)])}
  rows = {}
  for transform_name, transform in robustness.items():
    for decay in (0.0, 0.03, 0.1):
      for steps in (200, 500):
        preset = presets.Preset(objectives.class_log_prob(), optax.adamw(0.05, weight_decay=decay),
                                parameterizations.decoder(decode, vae.latent_dim), steps, transform)
        result, timing = common.run_preset(apply_fn, params, preset, targets, args.restarts,
                                           args.seed)
        name = f"{transform_name} decay={decay:g} steps={steps}"
        rows[name] = common.quality(result, timing, targets, judge, ds.train_images)
        common.log(f"{name}: agreement {rows[name]['agreement']['mean']:.3f} "
                   f"(min {rows[name]['agreement']['min']:.3f}), p min "
                   f"{rows[name]['target_prob']['min']:.4f}, diversity "
                   f"{rows[name]['diversity']['mean']:.2f}")
  real = np.stack([ds.test_images[ds.test_labels == c][:args.restarts] for c in targets])
  rows["real test images"] = {"diversity": {"mean": float(metrics.diversity(real).mean())},
                              "seconds": 0.0, "compile_seconds": 0.0}
  common.write_json(args.out, rows)
  print(common.table(rows))


if __name__ == "__main__":
  main()
