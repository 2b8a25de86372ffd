"""Readable data-free images (issue 19): two independent judges on every preset's images.

For each MLP teacher (mnist-mlp, r2rt-mlp, fashion-mlp), inverts 10 classes x R restarts with
the raw, data-free, readable, strokes and natural presets and reports the teacher's own
confidence (its worst class's mean), and how often each judge reads an image as its target (the
mean over classes, and the worst class). The judges are trained on the real training set with
outlier exposure, so that noise is not read as a class: `cnn` (a small convnet) and
`judge-resnet` (a wider residual convnet); they are loaded from --checkpoints, or trained there
when missing.
The strokes preset (each image the surer of two drawn) runs again drawing one. Writes a JSON of
the rows and a PNG grid per teacher, a column group per preset in that order (the first three
restarts of each: strokes' surest).

Run with JINVERT_DATA set (the judges and the natural prior learn from the data; the data-free
presets never read it).
"""

import jax
import jax.numpy as jnp
import numpy as np

import common
from jinvert import files, plots, presets
from jinvert.input_space import InputSpace

TEACHERS = {"mnist-mlp": "mnist", "r2rt-mlp": "mnist", "fashion-mlp": "fashion-mnist"}
PRESETS = ("raw", "data-free", "readable", "strokes", "natural")
# presets that keep the surest of several drawn (`Preset.draws`), also run drawing one
ONE_DRAW = ("strokes",)


def judges(dataset, checkpoints, data_dir):
  found = {}
  for name in ("cnn", "judge-resnet"):
    fn, params, meta = common.classifier(name, dataset, checkpoints, 0, data_dir)
    found[name] = (lambda fn: lambda p, x: fn(p, x)[0])(fn), params, meta["test_accuracy"]
  return found


def agreement(judge, images, targets):
  """(mean over classes, worst class) of the judge reading each image as its target."""
  fn, params, _ = judge
  t, r = images.shape[:2]
  predicted = np.asarray(jnp.argmax(fn(params, images.reshape((t * r,) + images.shape[2:])), -1))
  per_class = (predicted.reshape(t, r) == np.asarray(targets)[:, None]).mean(1)
  return float(per_class.mean()), float(per_class.min())


def main():
  p = common.parser(__doc__, "runs/readable_images.json", restarts=32)
  args = p.parse_args()
  targets = jnp.arange(10)
  rows, grids = [], {}
  for teacher, dataset in TEACHERS.items():
    fn, params, meta = common.classifier(teacher, dataset, args.checkpoints, 0, args.data_dir)
    judged = judges(dataset, args.checkpoints, args.data_dir)
    prior = common.vae_prior(dataset, args.checkpoints, args.data_dir)
    shown = []
    runs = [(name, False) for name in PRESETS] + [(name, True) for name in ONE_DRAW]
    for name, one_draw in runs:
      preset = presets.build(name, InputSpace((28, 28)), prior if name == "natural" else None)
      label = f"{name}, surest of {preset.draws}" if preset.draws > 1 else name
      if one_draw:
        preset, label = preset._replace(draws=1), f"{name}, one draw"
      result, timing = common.run_preset(fn, params, preset, targets, args.restarts, args.seed)
      probs = jax.nn.softmax(result.outputs)[targets, :, targets]
      row = {"teacher": teacher, "preset": label,
             "min_class_target_prob": float(probs.mean(1).min()),
             "seconds": round(timing["seconds"], 2),
             "compile_seconds": round(timing["compile_seconds"], 2)}
      for judge, found in judged.items():
        row[judge] = agreement(found, np.asarray(result.inputs), targets)
      rows.append(row)
      common.log(str(row))
      if not one_draw:
        shown.append(np.asarray(result.inputs)[:, :3])
    grids[teacher] = plots.grid_png(np.concatenate(shown, 1), list(range(10)),
                                    f"{teacher}: " + " / ".join(PRESETS) + " (3 each)")
  print("| teacher | preset | min class p(target) | cnn judge: mean / worst class | "
        "judge-resnet: mean / worst class | seconds (compile) |")
  print("|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['teacher']} | {r['preset']} | {r['min_class_target_prob']:.4f} | "
          f"{r['cnn'][0]:.1%} / {r['cnn'][1]:.1%} | {r['judge-resnet'][0]:.1%} / "
          f"{r['judge-resnet'][1]:.1%} | {r['seconds']} ({r['compile_seconds']}) |")
  common.write_json(args.out, rows)
  for teacher, png in grids.items():
    files.atomic_write_bytes(args.out.replace(".json", f"-{teacher}.png"), png)


if __name__ == "__main__":
  main()
