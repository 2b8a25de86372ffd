"""Seed 000's other answer: "a model that does the opposite" (digit + random seed -> image).

    python experiments/conditional_generator.py [--samples 100] [--seed 0] [--out runs/generator]

Trains (or loads) the conditional VAE mnist-cvae, the classifier mnist-mlp and the independent
CNN judge; samples every digit; reports the fraction of samples each classifier assigns to the
asked digit, mnist-mlp's probability, diversity, distance to the nearest training image and
images per second (10 x 1000 samples, compiled, timed apart from compilation). Writes
samples.png and metrics.json; prints a table.
"""

from pathlib import Path

import jax
import numpy as np

import common
from jinvert import data, generate, metrics, models, plots
from jinvert.timing import time_compiled


def main():
  parser = common.parser(__doc__, "runs/generator")
  parser.add_argument("--samples", type=int, default=100)
  args = parser.parse_args()
  out = Path(args.out)
  targets = np.arange(10)

  cvae_params, cvae_meta = common.train.load_or_train(
      Path(args.checkpoints) / "mnist-cvae-mnist-s0.msgpack", "mnist-cvae", "mnist", 0,
      args.data_dir, common.log)
  cvae = models.get_model("mnist-cvae").module()
  apply_fn, params, meta = common.classifier("mnist-mlp", "mnist", args.checkpoints, 0, args.data_dir)
  judge_fn, judge_params, judge_meta = common.classifier("cnn", "mnist", args.checkpoints, 0,
                                                         args.data_dir)
  train_images = data.load_dataset("mnist", args.data_dir).train_images

  def sampler(n):
    return jax.jit(lambda p, k: generate.sample(cvae, p, targets, n, k))

  images = sampler(args.samples)(cvae_params, jax.random.key(args.seed))
  outputs = jax.jit(lambda p, x: apply_fn(p, x)[0])(params, images.reshape(-1, 28, 28)).reshape(
      images.shape[:2] + (10,))
  summary = metrics.summarize(images, outputs, targets, (lambda p, x: judge_fn(p, x)[0], judge_params),
                              train_images)
  summary["source_agreement"] = {
      "per_target": np.asarray(metrics.agreement(lambda p, x: apply_fn(p, x)[0], params, images,
                                                 targets)).round(6).tolist()}
  summary["source_agreement"]["mean"] = float(np.mean(summary["source_agreement"]["per_target"]))
  summary["source_agreement"]["min"] = float(np.min(summary["source_agreement"]["per_target"]))

  _, compile_seconds, times = time_compiled(sampler(1000), (cvae_params, jax.random.key(1)),
                                            repeats=5)
  summary["images_per_second"] = 10_000 / float(np.median(times))
  summary["compile_seconds"] = compile_seconds
  plots.save_grid(out / "samples.png", images[:, :16], targets.tolist(),
                  "mnist-cvae: z ~ N(0, I) decoded with each digit")
  common.write_json(out / "metrics.json", {"generator": cvae_meta, "classifier": meta,
                                           "judge_test_accuracy": judge_meta["test_accuracy"],
                                           "samples_per_digit": args.samples, **summary})
  print(f"mnist-cvae, {args.samples} samples per digit")
  print("| measure | mean | worst digit |")
  print("|---|---|---|")
  for name, key in (("classified as asked by mnist-mlp", "source_agreement"),
                    ("classified as asked by the CNN", "agreement"),
                    ("mnist-mlp p(asked digit)", "target_prob"), ("diversity", "diversity"),
                    ("nearest training image", "nearest_train_distance")):
    print(f"| {name} | {summary[key]['mean']:.4f} | {summary[key]['min']:.4f} |")
  print(f"images per second: {summary['images_per_second']:.0f} (compile {compile_seconds:.2f} s); "
        f"wrote {out}/")


if __name__ == "__main__":
  main()
