"""Readable data-free images (issue 19): two independent judges on every preset's images.

For each teacher (the MLPs mnist-mlp, r2rt-mlp and fashion-mlp, and mnist-cnn, a convnet with
BatchNorm), inverts 10 classes x R restarts with the raw, data-free, readable, strokes,
capsules and natural presets as shipped, or those of --presets (for mnist-cnn data-free adds
the BatchNorm prior), and reports the teacher's own confidence (its worst class's mean), and
how often each judge reads an image as its target (the mean over classes, and the worst class);
first rows read the real test images the same way, the most a judge can be asked to read, all
of them and those the teacher is as sure of as the bar asks synthetic images to be. The judges
are trained on the real training set with outlier exposure, so that noise is not read as a
class: `judge-cnn` (the small convnet `cnn`) and `judge-resnet` (a wider residual convnet);
they are loaded from --checkpoints, or trained there when missing.
The strokes preset (each image the surest of five drawn) runs again drawing one; for mnist-cnn,
data-free runs again without the BatchNorm prior. Writes a JSON of the rows and a PNG grid per
teacher, a column group per preset as shipped, in that order (the first three restarts of each:
strokes' surest).

Run with JINVERT_DATA set (the judges and the natural prior learn from the data; the data-free
presets never read it). The lanes split over a CPU device per core, as `jinvert invert` splits
them (`JAX_NUM_CPU_DEVICES=1` keeps one device); the rows say over how many.
"""

import jax
import jax.numpy as jnp
import numpy as np

import common
from jinvert import data, devices, engine, files, metrics, plots, presets

TEACHERS = {"mnist-mlp": "mnist", "r2rt-mlp": "mnist", "fashion-mlp": "fashion-mnist",
            "mnist-cnn": "mnist"}
PRESETS = ("raw", "data-free", "readable", "strokes", "capsules", "natural")
# rows beside the presets as shipped: (label, preset, what `presets.build` is given)
VARIANTS = (("strokes, one draw", "strokes", {"draws": 1}),)
# and for teachers with BatchNorm layers (the data-free preset adds the BatchNorm prior)
BATCHNORM_VARIANTS = (("data-free without the BatchNorm prior", "data-free",
                       {"batchnorm_weight": 0.0}),)
SURE = 0.99  # issue 19's bar for the teacher's confidence (its worst class)


def judges(dataset, checkpoints, data_dir):
  found = {}
  for name in ("judge-cnn", "judge-resnet"):
    fn, params, meta = common.classifier(name, dataset, checkpoints, 0, data_dir)
    found[name] = (lambda fn: lambda p, x: fn(p, x)[0])(fn), params, meta["test_accuracy"]
  return found


def reading(classes, labels):
  """(mean over classes, worst class) of a judge's predicted `classes` matching the labels."""
  per_class = [np.mean(classes[labels == c] == c) for c in np.unique(labels)]
  return float(np.mean(per_class)), float(np.min(per_class))


def agreement(judge, images, targets):
  """(mean over classes, worst class) of the judge reading images (targets, restarts, ...) as
  their target (`metrics.agreement`)."""
  fn, params, _ = judge
  per_class = np.asarray(metrics.agreement(fn, params, images, targets))
  return float(per_class.mean()), float(per_class.min())


def real_test_rows(teacher, clf, judged, dataset, data_dir):
  """The rows of the real test images: the teacher's confidence in their labels (its worst
  class's mean) and each judge's reading of them, the most a judge can be asked to read; then
  the same for the real images the teacher is >= SURE of, what the bar asks of synthetic ones
  (the fewest a class keeps, in the label)."""
  test = data.load_dataset(dataset, data_dir)
  images, labels = jnp.asarray(test.test_images), np.asarray(test.test_labels)
  outputs = metrics.in_batches(engine.outputs_only(clf.apply_fn), clf.params, images, 1000)
  probs = np.asarray(jax.nn.softmax(outputs))[np.arange(len(labels)), labels]
  sure = probs >= SURE
  fewest = min(sure[labels == c].mean() for c in range(10))
  read = {judge: np.asarray(metrics.predicted_classes(fn, params, images))
          for judge, (fn, params, _) in judged.items()}
  rows = []
  for label, kept in (("real test images", slice(None)),
                      (f"real test images p >= {SURE} (a class keeps >= {fewest:.0%})", sure)):
    rows.append({"teacher": teacher, "preset": label, "draws": 1,
                 "min_class_target_prob": float(min(probs[kept][labels[kept] == c].mean()
                                                    for c in range(10))),
                 "seconds": 0.0, "compile_seconds": 0.0} |
                {judge: reading(classes[kept], labels[kept]) for judge, classes in read.items()})
  return rows


def main():
  p = common.parser(__doc__, "runs/readable_images.json", restarts=32)
  p.add_argument("--teachers", default=",".join(TEACHERS), type=common.names(TEACHERS, "teacher"),
                 help=f"comma-separated, of {', '.join(TEACHERS)} (all)")
  p.add_argument("--presets", default=",".join(PRESETS), type=common.names(PRESETS, "preset"),
                 help=f"comma-separated, of {', '.join(PRESETS)} (all; each with its variants)")
  args = p.parse_args()
  # issue 19's time is this CPU's, all of it, as the command line uses it: before JAX starts
  devices.use_every_core()
  chosen = args.presets
  targets = jnp.arange(10)
  rows, grids = [], {}
  for teacher in args.teachers:
    dataset = TEACHERS[teacher]
    clf = common.teacher(teacher, dataset, args.checkpoints, args.data_dir)
    judged = judges(dataset, args.checkpoints, args.data_dir)
    prior = common.vae_prior(dataset, args.checkpoints, args.data_dir) \
        if "natural" in chosen else None
    shown = {}  # the first three images of each preset as shipped, by name
    for row in real_test_rows(teacher, clf, judged, dataset, args.data_dir):
      rows.append(row)
      common.log(str(row))
    runs = [(name, name, {}) for name in PRESETS] + list(VARIANTS) + \
        list(BATCHNORM_VARIANTS if clf.batchnorm else ())
    runs = [run for run in runs if run[1] in chosen]
    for label, name, given in runs:
      preset = presets.build(name, clf.space, prior if name == "natural" else None,
                             batchnorm=clf.batchnorm, **given)
      result, timing = common.run_preset(clf.apply_fn, clf.params, preset, targets,
                                         args.restarts, args.seed)
      probs = jax.nn.softmax(result.outputs)[targets, :, targets]
      row = {"teacher": teacher, "preset": label, "draws": preset.draws,
             "min_class_target_prob": float(probs.mean(1).min()),
             "seconds": round(timing["seconds"], 2),
             "compile_seconds": round(timing["compile_seconds"], 2),
             "devices": timing["devices"]}
      for judge, found in judged.items():
        row[judge] = agreement(found, np.asarray(result.inputs), targets)
      rows.append(row)
      common.log(str(row))
      if not given:
        shown[label] = np.asarray(result.inputs)[:, :3]
    grids[teacher] = plots.grid_png(np.concatenate(list(shown.values()), 1), list(range(10)),
                                    f"{teacher}: " + " / ".join(shown) + " (3 each)")
  print("| teacher | preset | draws | min class p(target) | judge-cnn: mean / worst class | "
        "judge-resnet: mean / worst class | seconds (compile), devices |")
  print("|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['teacher']} | {r['preset']} | {r['draws']} | {r['min_class_target_prob']:.4f} | "
          f"{r['judge-cnn'][0]:.1%} / {r['judge-cnn'][1]:.1%} | {r['judge-resnet'][0]:.1%} / "
          f"{r['judge-resnet'][1]:.1%} | {r['seconds']} ({r['compile_seconds']}), "
          f"{r.get('devices', '-')} |")
  common.write_json(args.out, rows)
  for teacher, png in grids.items():
    files.atomic_write_bytes(args.out.replace(".json", f"-{teacher}.png"), png)


if __name__ == "__main__":
  main()
