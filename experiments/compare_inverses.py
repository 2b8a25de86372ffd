"""One table: every way jinvert answers "give me an input for this output", side by side.

    python experiments/compare_inverses.py [--restarts 32] [--seed 0] [--out runs/compare]

All methods target digits 0-9, R images each, on the same classifier, r2rt-mlp (seed 002's
sigmoid MLP: the one model every method applies to), and are scored the same way:
  gradient inversion, raw and natural presets (the engine);
  learned inverse (seed 002): the last hidden layer optimised until confident (from N(0, I),
    one start per image), projected back by the learned w2_inv, w1_inv;
  exact inverse: the same hidden layers projected back by logit + pseudo-inverse;
  conditional generator: mnist-cvae samples.
Per method: r2rt-mlp's probability of the target, agreement of the independent CNN, diversity,
distance to the nearest training image, TV, and seconds per image (compiled, compile apart).
Projected images are clipped to [0, 1] before scoring. Writes compare.md, compare.json and
one PNG per method under --out, and prints the table.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import common
from jinvert import (data, exact_inverse, generate, learned_inverse, metrics, models, plots,
                     presets)
from jinvert.files import atomic_write_bytes
from jinvert.timing import time_compiled


def timed(fn, *args):
  """(result, compile seconds, run seconds) of jax.jit(fn)(*args)."""
  result, compile_seconds, (seconds,) = time_compiled(jax.jit(fn), args)
  return result, compile_seconds, seconds


def main():
  parser = common.parser(__doc__, "runs/compare", restarts=32)
  args = parser.parse_args()
  out, ckpt = Path(args.out), Path(args.checkpoints)
  targets = np.arange(10)
  r = args.restarts

  apply_fn, params, meta = common.classifier("r2rt-mlp", "mnist", ckpt, 0, args.data_dir)
  judge_fn, judge_params, judge_meta = common.classifier("cnn", "mnist", ckpt, 0, args.data_dir)
  judge = (lambda p, x: judge_fn(p, x)[0], judge_params)
  vae_params, _ = common.train.load_or_train(ckpt / "vae-mnist-s0.msgpack", "vae", "mnist", 0,
                                             args.data_dir, common.log)
  cvae_params, _ = common.train.load_or_train(ckpt / "mnist-cvae-mnist-s0.msgpack", "mnist-cvae",
                                              "mnist", 0, args.data_dir, common.log)
  ds = data.load_dataset("mnist", args.data_dir)
  logits_of = jax.jit(lambda x: apply_fn(params, x.reshape(-1, 28, 28))[0])

  def score(images, compile_s, run_s):
    images = jnp.clip(jnp.asarray(images).reshape(10, r, 28, 28), 0.0, 1.0)
    outputs = logits_of(images).reshape(10, r, -1)
    s = metrics.summarize(images, outputs, targets, judge, ds.train_images)
    s.update(compile_seconds=compile_s, seconds=run_s, image_seconds=run_s / (10 * r))
    return images, s

  rows, images = {}, {}
  for name, preset in (("gradient, raw", presets.raw()),
                       ("gradient, natural", presets.natural(models.get_model("vae").module(),
                                                             vae_params))):
    result, timing = common.run_preset(apply_fn, params, preset, targets, r, args.seed)
    images[name], rows[name] = score(result.inputs, timing["compile_seconds"], timing["seconds"])

  learned, _, _ = learned_inverse.train_learned_inverse(apply_fn, params, ds.train_images,
                                                jax.random.key(args.seed + 1))
  flat_targets = jnp.repeat(jnp.arange(10), r)
  key = jax.random.key(args.seed)
  for name, project in (
      ("learned inverse (seed 002)", lambda z: learned_inverse.project_back(learned, params, z)[0]),
      ("exact inverse", lambda z: exact_inverse.exact_mlp_inverse(params, jax.nn.sigmoid(z)))):
    def method(key, project=project):
      z, _ = learned_inverse.generate_hidden(params, flat_targets, key=key)
      return project(z)
    x, compile_s, run_s = timed(method, key)
    images[name], rows[name] = score(x, compile_s, run_s)

  cvae = models.get_model("mnist-cvae").module()
  x, compile_s, run_s = timed(lambda p, k: generate.sample(cvae, p, targets, r, k), cvae_params, key)
  images["conditional generator"], rows["conditional generator"] = score(x, compile_s, run_s)

  for i, (name, imgs) in enumerate(images.items()):
    plots.save_grid(out / f"method{i}.png", imgs[:, :12], targets.tolist(), name)
  header = ("| method | r2rt p(target) | worst class p | CNN agreement | worst class | diversity "
            "| nearest train | TV | s / image |")
  lines = [header, "|---|---|---|---|---|---|---|---|---|"]
  for name, s in rows.items():
    lines.append(f"| {name} | {s['target_prob']['mean']:.4f} | {s['target_prob']['min']:.4f} | "
                 f"{s['agreement']['mean']:.4f} | {s['agreement']['min']:.4f} | "
                 f"{s['diversity']['mean']:.3f} | {s['nearest_train_distance']['mean']:.3f} | "
                 f"{s['total_variation']['mean']:.1f} | {s['image_seconds']:.2e} |")
  table = "\n".join(lines)
  intro = (f"r2rt-mlp (test accuracy {meta['test_accuracy']:.4f}); agreement judged by the "
           f"independent CNN (test accuracy {judge_meta['test_accuracy']:.4f}); digits 0-9, "
           f"{r} images each; jax {jax.__version__} on {jax.devices()[0].device_kind}.")
  atomic_write_bytes(out / "compare.md", (intro + "\n\n" + table + "\n").encode())
  common.write_json(out / "compare.json", {"classifier": meta, "restarts": r, "methods": rows})
  print(intro)
  print(table)
  print(f"wrote {out}/")


if __name__ == "__main__":
  main()
