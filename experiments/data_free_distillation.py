"""Data-free distillation: how much of a teacher's knowledge its inversions carry.

    python experiments/data_free_distillation.py [--images 60000] [--teachers mnist-mlp,fashion-mlp]
        [--seed 0] [--out runs/data_free_distillation]

For each teacher (mnist-mlp on MNIST, fashion-mlp on Fashion-MNIST) a fresh 784-256-256-10
student (mnist-mlp's architecture) is distilled from a transfer set of --images images, and
scored on the real test set. Rows:
  noise, raw, data-free               transfer sets from no inversion, seed 003's, and the preset
  data-free - X                       each ingredient removed in turn: of the images (total
                                      variation, L1, dark start, jitter+blur robustness) and of
                                      the student's training (mixup, noise)
  data-free, 3 adaptive rounds        later rounds where the student disagrees with the teacher
  natural (uses data)                 the VAE prior, trained on the real images
  real training set (ceiling)         the same student training on the 60,000 real images
Columns: the student's test accuracy, images, wall seconds (synthesis + training), and the
agreement of an independently trained CNN with the target class on the synthesised images.
Writes table.md, metrics.json, distillation.png (the main rows as bars) and data_free_<dataset>.png
(a grid per class) under --out, row by row: a rerun with the same --images, --steps and --seed
skips the rows already there. The rows the question needs (noise, raw, data-free, the ceiling,
natural) run first for every teacher, then the rest (--main-rows: only the first).
Every data-free row reads no data until its student is scored.
"""

import dataclasses
import json
import time
from pathlib import Path

import jax
import numpy as np

import common
from jinvert import data, distill, engine, metrics, models, objectives, parameterizations, plots, presets

PUBLISHED = """Published, for the same setting (not measured here):

| method | teacher (test acc.) | student | student acc. |
|---|---|---|---|
| Lopes et al. 2017 (activation records) | MLP 784-1200-1200-10 (96.95%) | MLP 784-800-800-10 | 91.24% |
| DAFL (Chen et al. 2019) | MLP 784-1200-1200-10 (98.39%) | MLP 784-800-800-10 | 97.91% |
| noise baseline in DAFL's table | same MLP | same MLP | 87.58% |
| DAFL / DFAD / ZSKD | LeNet-5 (98.9%) | LeNet-5-half | 98.20% / 98.3% / 98.77% |
| ZSKD (Nayak et al. 2019), Fashion-MNIST | LeNet-5 | LeNet-5-half | 79.62% |
"""

TEACHERS = {"mnist-mlp": "mnist", "fashion-mlp": "fashion-mnist"}
INGREDIENTS = ("total variation", "L1", "dark start", "jitter+blur")
ROWS = ["noise", "raw", "data-free", *(f"data-free - {i}" for i in INGREDIENTS),
        "data-free - mixup", "data-free - noise", "data-free, 3 adaptive rounds",
        "natural (uses data)", "real training set (ceiling)"]


def without(preset: presets.Preset, ingredient: str) -> presets.Preset:
  """The data-free preset with one ingredient of its images removed."""
  base = presets.data_free()
  if ingredient == "total variation":
    return base._replace(objective=objectives.class_log_prob() - 0.3 * objectives.l1())
  if ingredient == "L1":
    return base._replace(objective=objectives.class_log_prob() - 0.3 * objectives.total_variation())
  if ingredient == "dark start":
    return base._replace(parameterization=parameterizations.sigmoid(scale=0.5))
  if ingredient == "jitter+blur":
    return base._replace(transform=None)
  raise ValueError(ingredient)


def rows_to_run(vae):
  """name -> (preset or None, rounds, StudentRecipe changes, uses data)."""
  data_free = presets.data_free()
  rows = {"noise": (None, 1, {}, False), "raw": (presets.raw(), 1, {}, False),
          "data-free": (data_free, 1, {}, False)}
  for ingredient in INGREDIENTS:
    rows[f"data-free - {ingredient}"] = (without(data_free, ingredient), 1, {}, False)
  rows["data-free - mixup"] = (data_free, 1, {"mixup": 0.0}, False)
  rows["data-free - noise"] = (data_free, 1, {"noise": 0.0}, False)
  rows["data-free, 3 adaptive rounds"] = (data_free, 3, {}, False)
  rows["natural (uses data)"] = (presets.natural(*vae), 1, {}, True)
  return rows


def load_finished(path: Path, settings: dict) -> dict:
  """Rows an earlier run with the same settings finished (it may have been interrupted)."""
  if not path.exists():
    return {}
  earlier = json.loads(path.read_text())
  if {k: earlier.get(k) for k in settings} != settings:
    return {}
  return earlier.get("teachers", {})


def table(report: dict, steps: int) -> str:
  lines = []
  for name, r in report.items():
    teacher_accuracy = r["teacher_test_accuracy"]
    lines += [f"\n### {name} teacher ({TEACHERS[name]}, test accuracy {teacher_accuracy:.4f}), "
              f"784-256-256-10 student, {steps} steps\n",
              "| transfer set | student test acc. | student / teacher | images | wall s | "
              "CNN agreement | uses data |", "|---|---|---|---|---|---|---|"]
    for row, r in sorted(r["rows"].items(), key=lambda item: ROWS.index(item[0])):
      agreement = "-" if r["cnn_agreement"] is None else f"{100 * r['cnn_agreement']:.1f}%"
      mark = " (a)" if r.get("recorded_from") else ""
      lines.append(f"| {row}{mark} | {100 * r['student_test_accuracy']:.2f}% | "
                   f"{r['student_test_accuracy'] / teacher_accuracy:.3f} | {r['images']:,} | "
                   f"{r['wall_seconds']:.0f} | {agreement} | {'yes' if r['uses_data'] else 'no'} |")
  if any(r.get("recorded_from") for t in report.values() for r in t["rows"].values()):
    lines.append("\n(a) From the log of an earlier run with the same settings that was interrupted "
                 "before it saved its rows, with the code of that time: accuracy and wall time only.")
  return ("\n".join(lines) + "\n\n" + PUBLISHED +
          "\nDAFL's student / teacher: 97.91 / 98.39 = 0.995.\n")


MAIN_ROWS = ["noise", "raw", "data-free", "natural (uses data)", "real training set (ceiling)"]


def chart(report: dict, images: int) -> bytes:
  """The main rows' student accuracies as bars, a group per row, a bar per teacher; each
  teacher's own accuracy as a dashed line."""
  series = {name: [100 * r["rows"][row]["student_test_accuracy"] if row in r["rows"] else None
                   for row in MAIN_ROWS] for name, r in report.items()}
  labels = ["noise", "raw", "data-free", "natural\n(uses data)", "real images"]
  return plots.bars_png(labels, series, "student test accuracy (%)",
                        f"784-256-256-10 students distilled from {images:,} images; dashed: "
                        "the teacher",
                        {name: 100 * r["teacher_test_accuracy"] for name, r in report.items()},
                        ylim=(0, 104))


def main():
  parser = common.parser(__doc__, "runs/data_free_distillation")
  parser.add_argument("--images", type=int, default=60_000, help="transfer images per row (60000)")
  parser.add_argument("--teachers", default=",".join(TEACHERS),
                      type=common.names(TEACHERS, "teacher"),
                      help=f"comma-separated, of {', '.join(TEACHERS)} (all)")
  parser.add_argument("--steps", type=int, default=distill.StudentRecipe.steps,
                      help="student steps per row")
  parser.add_argument("--main-rows", action="store_true",
                      help="only the rows the question needs, not the ablations")
  args = parser.parse_args()
  out = Path(args.out)
  settings = {"images": args.images, "steps": args.steps, "seed": args.seed}
  # every finished row is saved at once, and a rerun with the same settings skips it: a row takes
  # minutes, and the whole table hours
  report = load_finished(out / "metrics.json", settings)

  def save():
    common.write_json(out / "metrics.json", {**settings, "teachers": report})
    common.atomic_write_bytes(out / "table.md", table(report, args.steps).encode())
    common.atomic_write_bytes(out / "distillation.png", chart(report, args.images))

  student_spec = models.get_model("mnist-mlp")
  student = student_spec.module()
  recipe = distill.StudentRecipe(steps=args.steps)
  contexts = {}

  def context(name):
    """The teacher, its judge, prior and data, loaded once per teacher."""
    if name not in contexts:
      dataset = TEACHERS[name]
      apply_fn, params, _ = common.classifier(name, dataset, args.checkpoints, 0, args.data_dir)
      judge, _ = common.judge(dataset, args.checkpoints, args.data_dir)
      vae = common.vae_prior(dataset, args.checkpoints, args.data_dir)
      ds = data.load_dataset(dataset, args.data_dir)
      if name not in report:  # scored once, the first time the teacher is seen
        report[name] = {"teacher_test_accuracy": common.train.evaluate(
            engine.outputs_only(apply_fn), params, ds.test_images, ds.test_labels)["accuracy"],
                        "rows": {}}
      contexts[name] = {"dataset": dataset, "teacher": (apply_fn, params), "judge": judge,
                        "rows": rows_to_run(vae), "ds": ds, "images_for": {}}
    return contexts[name]

  def run_row(name, row):
    c = context(name)
    apply_fn, params = c["teacher"]
    ds = c["ds"]
    key = jax.random.key(args.seed)
    init_key, run_key = jax.random.split(key)
    t0 = time.perf_counter()
    if row == "real training set (ceiling)":  # the same student training on the real images
      student_params = distill.train_student(student, student_spec.init_params(init_key),
                                             ds.train_images, engine.outputs_only(apply_fn),
                                             params, jax.random.key(args.seed + 1), recipe)
      return student_params, {"images": len(ds.train_images), "wall_seconds":
                              time.perf_counter() - t0, "cnn_agreement": None, "uses_data": True}
    preset, rounds, changes, uses_data = c["rows"][row]
    row_recipe = dataclasses.replace(recipe, **changes)
    cached = c["images_for"].get((id(preset), rounds)) if changes else None
    if cached is None:
      student_params, images, seconds = distill.distill(
          apply_fn, params, student, student_spec.init_params(init_key), args.images, 10,
          (28, 28), run_key, preset, rounds, row_recipe)
      c["images_for"][(id(preset), rounds)] = images
    else:  # a change to the student's training only: the same images
      images = cached
      t1 = time.perf_counter()
      student_params = distill.train_student(student, student_spec.init_params(init_key), images,
                                             engine.outputs_only(apply_fn), params,
                                             jax.random.split(jax.random.fold_in(run_key, 0))[1],
                                             row_recipe)
      seconds = {"synth_seconds": 0.0, "train_seconds": time.perf_counter() - t1}
    wall = time.perf_counter() - t0
    # the transfer set is class-major, as targets; rounds > 1 append round by round
    labels = np.concatenate([np.repeat(np.arange(10), n // 10) for n in
                             distill.round_sizes(args.images, 10, rounds)])
    agreement = None
    if preset is not None:
      agreement = float(np.mean(metrics.agreement(*c["judge"], images[None], labels[None])[0]))
    if row == "data-free":
      grid = images.reshape(10, -1, 28, 28)[:, :16]
      plots.save_grid(out / f"data_free_{c['dataset']}.png", grid, list(range(10)),
                      f"{name}: data-free images (no data, 16 of {args.images // 10} per class)")
    return student_params, {"images": len(images), "wall_seconds": wall, **seconds,
                            "cnn_agreement": agreement, "uses_data": uses_data}

  # the rows the question needs first, for every teacher; then the ablations
  first = ["noise", "raw", "data-free", "real training set (ceiling)", "natural (uses data)"]
  for rows in (first, [] if args.main_rows else [row for row in ROWS if row not in first]):
    for name in args.teachers:
      for row in rows:
        done = report.get(name, {}).get("rows", {})
        if row in done:
          common.log(f"{name}: {row}: done earlier, {done[row]['student_test_accuracy']:.4f}")
          continue
        common.log(f"{name}: {row}")
        student_params, result = run_row(name, row)
        ds = context(name)["ds"]
        accuracy = common.train.evaluate(student.apply, student_params, ds.test_images,
                                         ds.test_labels)["accuracy"]
        report[name]["rows"][row] = {"student_test_accuracy": accuracy, **result}
        common.log(f"  {accuracy:.4f} ({result['wall_seconds']:.0f} s)")
        save()
  save()
  print(table(report, args.steps))


if __name__ == "__main__":
  main()
