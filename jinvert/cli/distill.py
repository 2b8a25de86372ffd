"""`jinvert distill`: train a student from nothing but a teacher's inversions (data-free)."""

import dataclasses
import math
import sys
from typing import Any, NamedTuple

from jinvert.cli import arguments, cluster, resume
from jinvert.errors import JinvertError

NOISE = "noise"  # the baseline that inverts nothing: uniform noise as the transfer set


def add(commands):
  from jinvert import presets, priors
  from jinvert.distill import SAVE_EVERY
  p = commands.add_parser(
      "distill", help="train a student from a teacher's inversions alone (data-free distillation)",
      description="Synthesise a class-balanced transfer set from TEACHER alone, train a fresh "
                  "student to match the teacher's outputs on it (every augmented batch labelled "
                  "by the teacher), then score both on the real test set: the only use of real "
                  "data (with a preset that uses data, such as natural, its prior does too, and "
                  "the JSON says so). Without a test set the student is still written and its "
                  "accuracy is null. Progress goes to stderr; the last stdout line is JSON: "
                  "teacher, teacher_test_accuracy, student, student_test_accuracy, images, "
                  "preset, soft_targets, uses_data, rounds, synth_seconds, train_seconds, "
                  "checkpoint, processes.")
  p.add_argument("teacher", metavar="TEACHER",
                 help="a classifier checkpoint (jinvert train) or an .onnx file")
  p.add_argument("--student", required=True, metavar="MODEL",
                 help="the registered classifier to train, e.g. mnist-mlp (784-256-256-10)")
  p.add_argument("--images", type=arguments.count, required=True,
                 help="transfer images, a multiple of the teacher's classes (e.g. 60000)")
  p.add_argument("--preset", choices=(*presets.REGISTRY, NOISE), default="data-free",
                 help="; ".join(f"{name}: {spec.summary}" + (" (uses data)" if spec.uses_data
                                                             else "")
                                for name, spec in presets.REGISTRY.items())
                 + f"; {NOISE}: uniform noise, no inversion. Default: data-free")
  p.add_argument("--rounds", type=arguments.count, default=1,
                 help="1 (default), or adaptive rounds: each later round adds images where the "
                      "student still disagrees with the teacher, and the student is retrained")
  p.add_argument("--soft-targets", action="store_true",
                 help=f"ZSKD's soft targets ({', '.join(presets.soft_target_presets())} "
                      "presets): each image "
                      "matches its own Dirichlet draw over the classes, concentrated by the "
                      "classes' similarity in the teacher's final layer, at temperature 20, "
                      "instead of one class: images between the classes, as a student must learn "
                      "them (a zoo teacher)")
  p.add_argument("--steps", type=arguments.count,
                 help="student optimiser steps of 100 images (fewer if --images is smaller; "
                      "default: the student's recipe, 36000, or 108000 for the LeNet-5 "
                      "students)")
  p.add_argument("--batchnorm-prior", type=arguments.finite, metavar="W",
                 help=arguments.BATCHNORM_HELP)
  p.add_argument("--seed", type=arguments.seed, default=0, help="jax.random seed of everything")
  p.add_argument("--dataset", choices=priors.DATASETS,
                 help="the test set (and prior) for a teacher that names no dataset")
  p.add_argument("--data-dir", help="where the test set is (else JINVERT_DATA, the cache, a "
                                    "download); read only after the student is trained")
  p.add_argument("--out", required=True, help="the student's checkpoint (.msgpack)")
  resume.add(p, "the run's finished pieces (the transfer set in pieces, the student's training "
                 "state every --save-every steps)")
  p.add_argument("--save-every", type=arguments.count, metavar="STEPS",
                 help=f"with --work-dir: student steps between kept training states (default "
                      f"{SAVE_EVERY}; kept at the end of the 600-step compiled chunk that "
                      "reaches each multiple)")
  cluster.add(p)
  p.set_defaults(run=run)


class _Job(NamedTuple):
  teacher: Any        # the Classifier
  teacher_fn: Any     # the teacher on u in [0, 1] shaped as the student's inputs
  student: Any        # the student's ModelSpec
  dataset: str | None
  uses_data: bool     # the preset reads data (its prior)
  prior: Any          # the prior's params as priors.check found them, or None
  batchnorm_weight: Any  # --batchnorm-prior, checked, or None for the preset's choice
  similarity: Any     # --soft-targets: the teacher's class similarity, else None


def _checked(args) -> _Job:
  """Reads and checks every argument and the teacher, before any work."""
  from jinvert import classifiers, distill, memory, models, presets, priors
  teacher = classifiers.load_model(args.teacher, "TEACHER")
  student = models.get_model(args.student)
  teacher_fn = _in_shape(teacher, student)
  models.require_task(student.name, "classifier", f"--student {student.name}")
  if student.n_classes != teacher.n_classes:
    raise JinvertError(f"--student {student.name} has {student.n_classes} classes, the teacher "
                       f"{teacher.n_classes}")
  if args.images % teacher.n_classes:
    raise JinvertError(f"--images must be a multiple of the teacher's {teacher.n_classes} "
                       f"classes, got {args.images}")
  distill.round_sizes(args.images, teacher.n_classes, args.rounds)
  memory.require(4 * args.images * math.prod(teacher.input_shape), memory.host_available_bytes(),
                 f"{args.images:,} transfer images", "use fewer --images")
  dataset = args.dataset or teacher.dataset
  uses_data = args.preset != NOISE and presets.get(args.preset).uses_data
  prior = None
  if args.preset != NOISE:
    presets.get(args.preset).check(teacher.space)
  if uses_data:
    if dataset is None:
      raise JinvertError(f"TEACHER {args.teacher} names no dataset for the {args.preset} "
                         "preset's prior; pass --dataset")
    prior = priors.check(dataset)
  batchnorm_weight = arguments.batchnorm_weight(args.batchnorm_prior, teacher,
                                                f"TEACHER {args.teacher}")
  similarity = _similarity(teacher, args) if args.soft_targets else None
  return _Job(teacher, teacher_fn, student, dataset, uses_data, prior, batchnorm_weight,
              similarity)


def _similarity(teacher, args):
  """The teacher's class similarity for --soft-targets, from its final dense layer."""
  from jinvert import distill, presets
  presets.require_soft_targets(args.preset, "--soft-targets is")
  kernel = teacher.params.get("params", {}).get("out", {}).get("kernel")
  if kernel is None or kernel.ndim != 2 or kernel.shape[1] != teacher.n_classes:
    raise JinvertError(f"--soft-targets: TEACHER {args.teacher} has no final dense layer "
                       "'out' (a zoo classifier's) to read its classes' similarity from")
  return distill.class_similarity(kernel)


def _gray_size(shape):
  """(height, width) of a one-channel image of `shape`, in any layout; None for anything else."""
  from jinvert.input_space import layout
  lay = layout(shape)
  if lay.kind == "features" or lay.channels != 1:
    return None
  return tuple(shape[a] for a in lay.spatial_axes)


def _in_shape(teacher, student):
  """The teacher on u in [0, 1] shaped as the student's inputs: itself, or, for one grey image
  in another layout ((1, 28, 28) exported from torch, (28, 28) in the zoo), reshaped first."""
  fn, shape = teacher.unit_fn(), tuple(teacher.input_shape)
  if tuple(student.input_shape) == shape:
    return fn
  size = _gray_size(student.input_shape)
  if size is None or size != _gray_size(shape):
    raise JinvertError(f"--student {student.name} takes inputs of shape {student.input_shape}, "
                       f"the teacher {shape}")
  return lambda params, x: fn(params, x.reshape(x.shape[:1] + shape))


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


def _scores(job: _Job, module, params, data_dir):
  """(student accuracy, teacher accuracy) on the real test set: the first data read."""
  from jinvert import engine
  accuracy, why = _test_accuracy(module.apply, params, job.dataset, data_dir)
  if why is not None:
    print(f"jinvert distill: note: student_test_accuracy is null, no test set to score it: "
          f"{' '.join(why.split())}", file=sys.stderr)
    return None, job.teacher.metadata.get("test_accuracy")
  return accuracy, _test_accuracy(engine.outputs_only(job.teacher_fn), job.teacher.params,
                                  job.dataset, data_dir)[0]


def run(args):
  import jax

  from jinvert import checkpoint, distill, objectives, presets, priors
  from jinvert.cli import progress
  from jinvert import distributed
  from jinvert.files import Outputs
  from jinvert.input_space import InputSpace

  job = _checked(args)
  outputs = Outputs(inputs=[(args.teacher, "TEACHER")], writes=distributed.is_writer())
  out = outputs.add(args.out, "--out")
  teacher, student = job.teacher, job.student
  recipe = distill.StudentRecipe(batch_size=min(100, args.images), **{
    **student.distill, **({"steps": args.steps} if args.steps else {})})
  # the zoo's recipe may change between versions: a folder of the old one is not resumed
  work = resume.work_dir(args, args.teacher, student_recipe=dataclasses.asdict(recipe))
  # everything is checked: the work starts; no data is read until the student is trained
  preset = None
  if args.preset != NOISE:
    prior = priors.load(job.dataset, job.prior, args.data_dir) if job.uses_data else None
    soft = job.similarity is not None
    # the student's shape, the box of the teacher's format (strokes are framed by it)
    space = InputSpace(student.input_shape, box=teacher.space.box)
    preset = presets.build(args.preset, space, prior,
                           batchnorm=teacher.batchnorm, batchnorm_weight=job.batchnorm_weight,
                           likelihood=-objectives.cross_entropy_to(
                               temperature=distill.SOFT_TEMPERATURE) if soft else None)
  module = student.module()
  init_key, run_key = jax.random.split(jax.random.key(args.seed))
  with progress.bar("synthesising", args.images, "images") as on_images, \
      progress.bar("training the student", args.rounds * recipe.steps, "steps") as on_steps:
    params, _, seconds = distill.distill(
        job.teacher_fn, teacher.params, module, student.init_params(init_key), args.images,
        teacher.n_classes, student.input_shape, run_key, preset, args.rounds, recipe, on_images,
        on_steps, job.similarity, work, args.save_every or distill.SAVE_EVERY)
  checkpoint.check_finite(params, f"the student {student.name} diverged")
  accuracy, teacher_accuracy = _scores(job, module, params, args.data_dir)
  metadata = {"model": student.name, "init": student.inits[0], "seed": args.seed,
              "recipe": {"distill": dataclasses.asdict(recipe), "preset": args.preset,
                         "soft_targets": args.soft_targets,
                         "images": args.images, "rounds": args.rounds,
                         "uses_data": job.uses_data},
              "distilled_from": {"checkpoint": str(args.teacher), "model": teacher.name,
                                 "test_accuracy": teacher_accuracy},
              "test_accuracy": accuracy, "train_seconds": seconds["train_seconds"],
              "synth_seconds": seconds["synth_seconds"], **checkpoint.provenance()}
  if job.dataset is not None:
    metadata["dataset"] = job.dataset
  outputs.commit({out: checkpoint.checkpoint_bytes(params, metadata)})
  return {"teacher": str(args.teacher), "teacher_test_accuracy": teacher_accuracy,
          "student": student.name, "student_test_accuracy": accuracy, "images": args.images,
          "preset": args.preset, "soft_targets": args.soft_targets, "uses_data": job.uses_data,
          "rounds": args.rounds,
          "synth_seconds": round(seconds["synth_seconds"], 3),
          "train_seconds": round(seconds["train_seconds"], 3), "checkpoint": str(out)}
