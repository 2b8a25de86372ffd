"""Data-free distillation of convnets: LeNet-5 -> LeNet-5-half, and mnist-cnn -> LeNet-5-half.

    python experiments/convnet_distillation.py [--images 24000] [--steps 108000] [--seed 0]
        [--teachers lenet5,mnist-cnn] [--checkpoints checkpoints] [--out runs/convnet_distillation]

Each transfer row is one `jinvert distill TEACHER --student lenet5-half --images N --preset P`
run, as a user would type it: no real image is read until the student is scored
(tests/test_distill.py proves it with every data source unreachable). Rows per teacher:
  noise, raw, data-free                 no inversion, seed 003's, and the model-only preset
  data-free, no BatchNorm prior         mnist-cnn only: the prior off (--batchnorm-prior 0)
  data-free, soft targets               lenet5 only: ZSKD's Dirichlet targets (--soft-targets)
  real training set (ceiling)           `jinvert train lenet5-half` on the 60,000 real images
--steps is the student's optimiser steps (distill's --steps).
Columns: the student's test accuracy, student / teacher, images, synthesis and training seconds.
The published figures stand beside them, marked as published. Writes table.md, metrics.json
(row by row: a rerun with the same --images and --seed skips the rows already there) and
data_free_<teacher>.png (its data-free images, 10 classes x 8) under --out.
"""

import json
import subprocess
import sys
from pathlib import Path

import common

STUDENT = "lenet5-half"
PUBLISHED = """Published, for LeNet-5 -> LeNet-5-half on MNIST (not measured here):

| method | teacher | student | student / teacher |
|---|---|---|---|
| DAFL (Chen et al. 2019) | 98.91% | 98.20% | 0.993 |
| DFAD (Fang et al. 2019) | 98.9% | 98.3 +- 0.2% | 0.994 |
| ZSKD (Nayak et al. 2019), 24,000 synthesised images | 99.34% | 98.77% | 0.994 |
"""


def rows_for(teacher: str) -> dict:
  """{row: the distill arguments that make it}, the ceiling as None."""
  rows = {"noise": ["--preset", "noise"], "raw": ["--preset", "raw"],
          "data-free": ["--preset", "data-free"]}
  if teacher == "mnist-cnn":
    rows["data-free, no BatchNorm prior"] = ["--preset", "data-free", "--batchnorm-prior", "0"]
  if teacher == "lenet5":
    rows["data-free, soft targets"] = ["--preset", "data-free", "--soft-targets"]
  rows["real training set (ceiling)"] = None
  return rows


def jinvert(*argv) -> dict:
  """Runs the command line; returns its JSON line (stderr passes through as progress)."""
  proc = subprocess.run([sys.executable, "-m", "jinvert", *map(str, argv)], stdout=subprocess.PIPE,
                        text=True)
  if proc.returncode:
    raise SystemExit(f"jinvert {' '.join(map(str, argv))}: exit {proc.returncode}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def run_row(teacher_path: Path, arguments, images: int, steps: int, seed: int, out: Path,
            name: str, data_dir) -> dict:
  data = ["--data-dir", data_dir] if data_dir else []
  if arguments is None:  # the same for every teacher: trained once
    found = out / f"{STUDENT}-real.json"
    if not found.exists():
      found.write_text(json.dumps(jinvert("train", STUDENT, "--seed", seed, *data,
                                          "--out", out / f"{STUDENT}-real.msgpack")))
    summary = json.loads(found.read_text())
    return {"student_test_accuracy": summary["test_accuracy"], "images": 60_000,
            "synth_seconds": 0.0, "train_seconds": summary["train_seconds"]}
  summary = jinvert("distill", teacher_path, "--student", STUDENT, "--images", images,
                    "--steps", steps, "--seed", seed, *arguments, *data,
                    "--out", out / f"{STUDENT}-{name.replace(' ', '_').replace(',', '')}.msgpack")
  return {k: summary[k] for k in ("student_test_accuracy", "teacher_test_accuracy", "images",
                                  "synth_seconds", "train_seconds", "preset", "uses_data")}


def table(report: dict) -> str:
  lines = []
  for teacher, found in report["teachers"].items():
    accuracy = found["teacher_test_accuracy"]
    lines += [f"\n{teacher} ({100 * accuracy:.2f}%) -> {STUDENT}, {report['steps']:,} student "
              f"steps, seed {report['seed']}:\n",
              "| row | student acc. | student / teacher | images | synthesis s | training s |",
              "|---|---|---|---|---|---|"]
    for row, m in found["rows"].items():
      lines.append(f"| {row} | {100 * m['student_test_accuracy']:.2f}% | "
                   f"{m['student_test_accuracy'] / accuracy:.3f} | {m['images']:,} | "
                   f"{m['synth_seconds']:.0f} | {m['train_seconds']:.0f} |")
  return "\n".join(lines) + "\n\n" + PUBLISHED


def main():
  p = common.parser(__doc__, "runs/convnet_distillation")
  p.add_argument("--images", type=int, default=24_000, help="transfer images (default 24,000)")
  p.add_argument("--steps", type=int, default=108_000,
                 help="student steps (default 108,000, the LeNet-5 students' recipe)")
  p.add_argument("--teachers", default="lenet5,mnist-cnn")
  args = p.parse_args()
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  settings = {"images": args.images, "steps": args.steps, "seed": args.seed, "student": STUDENT}
  path = out / "metrics.json"
  report = json.loads(path.read_text()) if path.exists() else {}
  if {k: report.get(k) for k in settings} != settings:
    report = dict(settings, teachers={})
  for teacher in args.teachers.split(","):
    _, _, meta = common.classifier(teacher, "mnist", args.checkpoints, 0, args.data_dir)
    teacher_path = Path(args.checkpoints) / f"{teacher}-mnist-s0.msgpack"
    found = report["teachers"].setdefault(
        teacher, {"teacher_test_accuracy": meta["test_accuracy"], "rows": {}})
    for row, arguments in rows_for(teacher).items():
      if row in found["rows"]:
        continue
      common.log(f"{teacher} -> {STUDENT}: {row}")
      found["rows"][row] = run_row(teacher_path, arguments, args.images, args.steps, args.seed,
                                   out, row, args.data_dir)
      common.write_json(path, report)
    jinvert("invert", teacher_path, "--preset", "data-free", "--targets", "0-9", "--restarts", 8,
            "--seed", args.seed, "--out", out / f"data_free_{teacher}.npz",
            "--png", out / f"data_free_{teacher}.png")
  (out / "table.md").write_text(table(report))
  print(table(report))


if __name__ == "__main__":
  main()
