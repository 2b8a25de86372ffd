"""Feature visualisation, measured: every channel of a convnet, diversity, and a shortcut found.

    python experiments/feature_visualisation.py [--restarts 4] [--seed 0]
        [--out runs/feature_visualisation] [--panels channels,diversity,colored-mnist]

The recipe is `presets.feature_visualisation`: Lucid's (Adam 0.05 on a Fourier parameterisation
scaled by 1/frequency, robust to pad 12, jitter 8, scale 0.9-1.1, rotate +-10 degrees, jitter 4),
started dark and padded black as jinvert's data-free images are.

  channels       every channel of mnist-cnn's two convolutions, before the ReLU (block1_pre, 16;
                 block2_pre, 32: Lucid's choice, never stuck at a dead ReLU) and after it
                 (block1, block2), one compiled call per layer; also from Lucid's grey start.
                 Faithful when the optimised images drive a channel (its mean over positions, the
                 objective) above the largest value it takes on any of the 10,000 MNIST test
                 images: the fraction of such channels, for every restart and for their mean.
                 channels_<layer>.png (a row per channel).
  diversity      a target's restarts without and with W x diversity (minus the mean cosine
                 similarity of their Gram matrices): for the 10 classes under the data-free
                 preset, diversity at block2; for block2_pre's channels 0-7 under the recipe.
                 The mean pairwise distance between restarts (metrics.diversity) against W = 0,
                 and every restart's objective (the target probability; the channel's mean)
                 against its target's mean at W = 0. diversity.png (classes 0-4, W 0 and 1).
  colored-mnist  color-cnn trained on colored-mnist (digit k tinted hue 36k: the colour gives
                 the class away) and on colored-mnist-random (a random hue: it gives nothing
                 away). The data-free preset's class images, made with every data source
                 unreachable; the mean hue of each class's images (chroma-weighted, circular)
                 against 36k; each model's accuracy on both test sets. colored_mnist.png (the
                 two models side by side).
Writes metrics.json and table.md under --out and prints the tables. Checkpoints are loaded from
--checkpoints, or trained there first.
"""

import contextlib
import time
from pathlib import Path
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np

import common
from jinvert import (classifiers, data, engine, metrics, objectives, parameterizations, plots,
                     presets, train, transforms)
from jinvert.input_space import layout

LAYERS = ("block1_pre", "block2_pre", "block1", "block2")
PANELS = ("channels", "diversity", "colored-mnist")
HUE_TOLERANCE = 18.0  # degrees: half the 36 degrees between neighbouring classes


def load(name, dataset, args):
  """The Classifier of a registered model trained on `dataset`, trained first if missing."""
  path = Path(args.checkpoints) / f"{name}-{dataset}-s0.msgpack"
  train.load_or_train(path, name, dataset, 0, args.data_dir, common.log)
  return classifiers.load_model(path)


def lucid_grey_start(preset: presets.Preset, shape) -> presets.Preset:
  """The recipe as Lucid starts it: grey images (sigmoid(0)), padded grey."""
  return preset._replace(parameterization=parameterizations.fourier(shape),
                         transform=transforms.standard(layout(shape).spatial_axes))


def run(clf, preset, targets, restarts, seed):
  """(result, timing) of `preset` on `targets` of the classifier."""
  return engine.timed_invert(
      clf.unit_fn(), clf.params, preset.objective, jnp.asarray(targets), key=jax.random.key(seed),
      input_shape=clf.input_shape, restarts=restarts, steps=preset.steps,
      optimizer=preset.optimizer, parameterization=preset.parameterization,
      transform=preset.transform)


def channel_means(clf, layer, images, batch=1000):
  """Every channel's mean over positions at `layer`, for each of `images` (N, ...): (N, C)."""
  means = lambda params, x: jnp.mean(clf.unit_fn()(params, x)[1][layer], axis=(1, 2))
  return np.asarray(metrics.in_batches(means, clf.params, images, batch))


def reached(clf, layer, result, channels):
  """Each lane's mean of its target channel at `layer`, for `channels` (T,) the targets: (T, R)."""
  t, r = result.inputs.shape[:2]
  means = channel_means(clf, layer, result.inputs.reshape((-1,) + clf.input_shape))
  return means.reshape(t, r, -1)[np.arange(t), :, np.asarray(channels)]


def channels_panel(clf, test_images, args, out):
  rows = {}
  for layer in LAYERS:
    channels = dict((l["name"], l["channels"]) for l in clf.layer_shapes())[layer]
    test_max = channel_means(clf, layer, test_images).max(axis=0)
    preset = presets.feature_visualisation(clf.input_shape, objectives.channel(layer))
    starts = {"dark": preset}
    if layer.endswith("_pre"):
      starts["grey (Lucid's start)"] = lucid_grey_start(preset, clf.input_shape)
    for start, recipe in starts.items():
      t0 = time.perf_counter()
      result, timing = run(clf, recipe, np.arange(channels), args.restarts, args.seed)
      wall = time.perf_counter() - t0
      values = reached(clf, layer, result, np.arange(channels))
      rows[f"{layer}, {start}"] = {
          "layer": layer, "start": start, "channels": channels, "restarts": args.restarts,
          "steps": recipe.steps,
          "fraction_above_test_max_every_restart": float(np.mean(values.min(1) > test_max)),
          "fraction_above_test_max_mean": float(np.mean(values.mean(1) > test_max)),
          "median_excess": float(np.median(values.mean(1) - test_max)),
          "wall_seconds": round(wall, 2), "compile_seconds": round(timing["compile_seconds"], 2)}
      if start == "dark":
        plots.save_grid(out / f"channels_{layer}.png", result.inputs, list(range(channels)),
                        f"mnist-cnn {layer}: channel(c), {args.restarts} restarts")
      common.log(f"{layer}, {start}: {rows[f'{layer}, {start}']}")
  return rows


DIVERSITY_RUNS = {  # name: (objective, layer whose Gram matrices are compared, targets, weights)
    "classes, data-free": (objectives.class_log_prob(), "block2", np.arange(10), (0.0, 1.0, 3.0)),
    "block2_pre channels 0-7": (objectives.channel("block2_pre"), "block2_pre", np.arange(8),
                                (0.0, 0.1, 1.0)),
}


def diversity_panel(clf, args, out):
  rows, shown = {}, []
  for name, (objective, layer, targets, weights) in DIVERSITY_RUNS.items():
    base = presets.build("data-free", clf.space) if name.startswith("classes") else \
        presets.feature_visualisation(clf.input_shape, objective)
    for weight in weights:
      term = objective + weight * objectives.diversity(layer) if weight else objective
      result, timing = run(clf, base._replace(objective=term), targets, args.restarts, args.seed)
      if name.startswith("classes"):
        value = np.asarray(jax.nn.softmax(result.outputs))[targets, :, targets]
        if weight in (0.0, 1.0):
          shown.append(result.inputs[:5])
      else:
        value = reached(clf, "block2_pre", result, targets)
      spread = float(jnp.mean(metrics.diversity(result.inputs)))
      if not weight:
        plain_spread, plain_value = spread, value.mean(1, keepdims=True)
      kept = value / plain_value
      rows[f"{name}, W={weight:g}"] = {
          "objective": term.name, "weight": weight, "diversity": spread,
          "ratio": spread / plain_spread, "min_restart_objective_fraction": float(kept.min()),
          "mean_restart_objective_fraction": float(kept.mean()),
          "seconds": round(timing["seconds"], 2)}
      common.log(f"{name}, W={weight:g}: {rows[f'{name}, W={weight:g}']}")
  plots.save_grid(out / "diversity.png", jnp.concatenate(shown, axis=0),
                  [f"{c}, W=0" for c in range(5)] + [f"{c}, W=1" for c in range(5)],
                  "mnist-cnn, data-free: without and with 1 x diversity('block2')")
  return rows


@contextlib.contextmanager
def data_unreachable():
  """Any attempt to read a dataset fails loudly: what runs inside is data-free."""
  def refuse(*args, **kwargs):
    raise RuntimeError("a dataset was read while synthesising data-free images")
  with mock.patch.object(data, "load_dataset", refuse), mock.patch.object(data, "load_files", refuse):
    yield


def colored_panel(args, out):
  datasets = ("colored-mnist", "colored-mnist-random")
  models = {d: load("color-cnn", d, args) for d in datasets}
  tests = {d: data.load_dataset(d, args.data_dir) for d in datasets}
  report, grids = {}, []
  expected = 36.0 * np.arange(10)
  for dataset, clf in models.items():
    preset = presets.build("data-free", clf.space)
    with data_unreachable():
      result, timing = run(clf, preset, np.arange(10), args.restarts, args.seed)
    images = np.asarray(result.inputs)  # (10, R, 28, 28, 3)
    hues = metrics.mean_hue(images.reshape(10, -1, 28, 3))  # every restart's pixels together
    per_image = metrics.hue_difference(metrics.mean_hue(images), expected[:, None])
    probs = np.asarray(jax.nn.softmax(result.outputs))[np.arange(10), :, np.arange(10)]
    accuracy = {}
    for other, test in tests.items():
      accuracy[other] = train.evaluate(engine.outputs_only(clf.unit_fn()), clf.params,
                                       test.test_images, test.test_labels)["accuracy"]
    report[dataset] = {
        "mean_hue": [round(float(h), 1) for h in hues],
        "hue_error": [round(float(e), 1) for e in metrics.hue_difference(hues, expected)],
        "classes_within_tolerance": int(np.sum(metrics.hue_difference(hues, expected)
                                               <= HUE_TOLERANCE)),
        "images_within_tolerance": int(np.sum(per_image <= HUE_TOLERANCE)),
        "images": int(per_image.size), "mean_target_prob": float(probs.mean()),
        "min_class_target_prob": float(probs.mean(1).min()),
        "test_accuracy": accuracy, "seconds": round(timing["seconds"], 2),
        "recipe": f"{preset.objective.name}; {preset.parameterization.name}"}
    grids.append(images)
  side_by_side = np.concatenate([grids[0], np.ones_like(grids[0][:, :1]), grids[1]], axis=1)
  plots.save_grid(out / "colored_mnist.png", side_by_side, [f"{k}: {36 * k} deg" for k in range(10)],
                  f"color-cnn, data-free: colored-mnist (left {args.restarts}) | "
                  f"colored-mnist-random (right)")
  return report


def tables(report) -> str:
  lines = []
  if "channels" in report:
    lines += ["| layer, start | channels | above test max, every restart | above, restart mean | "
              "median excess | wall s |", "|---|---|---|---|---|---|"]
    lines += [f"| {name} | {r['channels']} | {r['fraction_above_test_max_every_restart']:.3f} | "
              f"{r['fraction_above_test_max_mean']:.3f} | {r['median_excess']:.2f} | "
              f"{r['wall_seconds']:.1f} |" for name, r in report["channels"].items()]
  if "diversity" in report:
    lines += ["", "| run | mean pairwise distance | ratio to W=0 | min restart objective / W=0 | "
              "mean |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {r['diversity']:.3f} | {r['ratio']:.2f} | "
              f"{r['min_restart_objective_fraction']:.3f} | {r['mean_restart_objective_fraction']:.3f} |"
              for name, r in report["diversity"].items()]
  if "colored-mnist" in report:
    lines += ["", "| color-cnn trained on | classes within 18 deg | images within | mean hue per "
              "class (0, 36, ..., 324 wanted) | p(target) | acc. colored-mnist | "
              "acc. colored-mnist-random |", "|---|---|---|---|---|---|---|"]
    for dataset, r in report["colored-mnist"].items():
      acc = r["test_accuracy"]
      lines.append(f"| {dataset} | {r['classes_within_tolerance']}/10 | "
                   f"{r['images_within_tolerance']}/{r['images']} | "
                   f"{', '.join(f'{h:.0f}' for h in r['mean_hue'])} | {r['mean_target_prob']:.3f} | "
                   f"{acc['colored-mnist']:.4f} | {acc['colored-mnist-random']:.4f} |")
  return "\n".join(lines)


def main():
  parser = common.parser(__doc__, "runs/feature_visualisation", restarts=4)
  parser.add_argument("--panels", default=",".join(PANELS), type=common.names(PANELS, "panel"),
                      help=f"comma-separated, of {', '.join(PANELS)} (all three)")
  args = parser.parse_args()
  out = Path(args.out)
  panels = args.panels
  report = {"seed": args.seed, "restarts": args.restarts}
  if "channels" in panels or "diversity" in panels:
    clf = load("mnist-cnn", "mnist", args)
    if "channels" in panels:
      test_images = data.load_dataset("mnist", args.data_dir).test_images
      report["channels"] = channels_panel(clf, test_images, args, out)
    if "diversity" in panels:
      report["diversity"] = diversity_panel(clf, args, out)
  if "colored-mnist" in panels:
    report["colored-mnist"] = colored_panel(args, out)
  common.write_json(out / "metrics.json", report)
  common.atomic_write_bytes(out / "table.md", (tables(report) + "\n").encode())
  print(tables(report))
  print(f"wrote {out}/")


if __name__ == "__main__":
  main()
