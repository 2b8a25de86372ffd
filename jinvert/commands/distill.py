"""`jinvert distill`: train a student from nothing but a teacher's inversions (data-free)."""

from jinvert import arguments
from jinvert.errors import JinvertError

PRESETS = ("data-free", "raw", "noise", "natural")


def add(commands):
  p = commands.add_parser(
      "distill", help="train a student from a teacher's inversions alone (data-free distillation)",
      description="Synthesise a class-balanced transfer set from TEACHER alone, train a fresh "
                  "student to match the teacher's outputs on it (every augmented batch labelled "
                  "by the teacher), then score both on the real test set: the only use of real "
                  "data (with --preset natural, its VAE prior uses data too, and the JSON says "
                  "so). Without a test set the student is still written and its accuracy is "
                  "null. Progress goes to stderr; the last stdout line is JSON: teacher, "
                  "teacher_test_accuracy, student, student_test_accuracy, images, preset, "
                  "uses_data, rounds, synth_seconds, train_seconds, checkpoint.")
  p.add_argument("teacher", metavar="TEACHER", help="a classifier checkpoint")
  p.add_argument("--student", required=True, metavar="MODEL",
                 help="the registered classifier to train, e.g. mnist-mlp (784-256-256-10)")
  p.add_argument("--images", type=arguments.count, required=True,
                 help="transfer images, a multiple of the teacher's classes (e.g. 60000)")
  p.add_argument("--preset", choices=PRESETS, default="data-free",
                 help="data-free (default): the model alone; raw: seed 003's pixel ascent; "
                      "noise: uniform noise, no inversion; natural: the VAE prior (uses data)")
  p.add_argument("--rounds", type=arguments.count, default=1,
                 help="1 (default), or adaptive rounds: each later round adds images where the "
                      "student still disagrees with the teacher, and the student is retrained")
  p.add_argument("--steps", type=arguments.count, default=36_000,
                 help="student optimiser steps of 100 images (fewer if --images is smaller; "
                      "default 36000)")
  p.add_argument("--seed", type=arguments.seed, default=0, help="jax.random seed of everything")
  p.add_argument("--dataset", choices=("mnist", "fashion-mnist"),
                 help="the test set (and natural prior) for a teacher that names no dataset")
  p.add_argument("--data-dir", help="where the test set is (else JINVERT_DATA, the cache, a "
                                    "download); read only after the student is trained")
  p.add_argument("--out", required=True, help="the student's checkpoint (.msgpack)")
  p.set_defaults(run=run)


def _test_accuracy(apply_fn, params, dataset, data_dir):
  """(accuracy, None) on the real test set, or (None, why not)."""
  from jinvert import data, train
  if dataset is None:
    return None, "the teacher names no dataset; pass --dataset"
  try:
    ds = data.load_dataset(dataset, data_dir)
  except JinvertError as e:
    return None, str(e)
  return train.evaluate(apply_fn, params, ds.test_images, ds.test_labels)["accuracy"], None


def run(args):
  import dataclasses
  import math
  import sys

  import jax

  from jinvert import __version__, checkpoint, distill, memory, models, presets, progress
  from jinvert.commands.invert import check_prior, natural_prior
  from jinvert.files import Outputs

  teacher_params, meta = checkpoint.load_checkpoint(args.teacher)
  teacher = models.require_task(meta["model"], "classifier", f"TEACHER {args.teacher}")
  student = models.get_model(args.student)
  if student.input_shape != teacher.input_shape:
    raise JinvertError(f"--student {student.name} takes inputs of shape {student.input_shape}, "
                       f"the teacher {teacher.input_shape}")
  models.require_task(student.name, "classifier", f"--student {student.name}")
  if student.n_classes != teacher.n_classes:
    raise JinvertError(f"--student {student.name} has {student.n_classes} classes, the teacher "
                       f"{teacher.n_classes}")
  n_classes = teacher.n_classes
  if args.images % n_classes:
    raise JinvertError(f"--images must be a multiple of the teacher's {n_classes} classes, got "
                       f"{args.images}")
  distill.round_sizes(args.images, n_classes, args.rounds)
  memory.require(4 * args.images * math.prod(teacher.input_shape), memory.host_available_bytes(),
                 f"{args.images:,} transfer images", "use fewer --images")
  dataset = args.dataset or meta.get("dataset")
  prior = None
  if args.preset == "natural":
    if dataset is None:
      raise JinvertError(f"TEACHER {args.teacher} names no dataset for the natural preset's "
                         "prior; pass --dataset")
    prior = check_prior(dataset)
  outputs = Outputs(inputs=[(args.teacher, "TEACHER")])
  out = outputs.add(args.out, "--out")

  # everything is checked: the work starts; no data is read until the student is trained
  teacher_apply = models.apply_with_activations(teacher.module(meta.get("init")))
  preset = {"data-free": presets.data_free, "raw": presets.raw, "noise": lambda: None,
            "natural": lambda: presets.natural(*natural_prior(dataset, prior, args.data_dir))}[
                args.preset]()
  module = student.module()
  key = jax.random.key(args.seed)
  init_key, run_key = jax.random.split(key)
  recipe = distill.StudentRecipe(steps=args.steps, batch_size=min(100, args.images))
  with progress.bar("synthesising", args.images, "images") as on_images, \
      progress.bar("training the student", args.rounds * recipe.steps, "steps") as on_steps:
    params, _, seconds = distill.distill(
        teacher_apply, teacher_params, module, student.init_params(init_key), args.images,
        n_classes, teacher.input_shape, run_key, preset, args.rounds, recipe, on_images,
        on_steps)
  checkpoint.check_finite(params, f"the student {student.name} diverged")

  accuracy, why = _test_accuracy(module.apply, params, dataset, args.data_dir)
  teacher_accuracy = meta.get("test_accuracy")
  if why is None:
    teacher_accuracy, _ = _test_accuracy(distill.teacher_logits(teacher_apply), teacher_params,
                                         dataset, args.data_dir)
  else:
    print(f"jinvert distill: note: student_test_accuracy is null, no test set to score it: "
          f"{' '.join(why.split())}", file=sys.stderr)
  uses_data = args.preset == "natural"
  metadata = {"model": student.name, "init": student.inits[0], "seed": args.seed,
              "recipe": {"distill": dataclasses.asdict(recipe), "preset": args.preset,
                         "images": args.images, "rounds": args.rounds, "uses_data": uses_data},
              "distilled_from": {"checkpoint": str(args.teacher), "model": teacher.name,
                                 "test_accuracy": teacher_accuracy},
              "test_accuracy": accuracy, "train_seconds": seconds["train_seconds"],
              "synth_seconds": seconds["synth_seconds"], "jinvert_version": __version__,
              "jax_version": jax.__version__, "backend": jax.default_backend()}
  if dataset is not None:
    metadata["dataset"] = dataset
  outputs.commit({out: checkpoint.checkpoint_bytes(params, metadata)})
  return {"teacher": str(args.teacher), "teacher_test_accuracy": teacher_accuracy,
          "student": student.name, "student_test_accuracy": accuracy, "images": args.images,
          "preset": args.preset, "uses_data": uses_data, "rounds": args.rounds,
          "synth_seconds": round(seconds["synth_seconds"], 3),
          "train_seconds": round(seconds["train_seconds"], 3), "checkpoint": str(out)}
