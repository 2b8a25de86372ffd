"""`jinvert invert`: find inputs that a trained classifier maps to chosen outputs."""

from pathlib import Path

from jinvert import arguments
from jinvert.errors import JinvertError

PRESETS = ("raw", "natural", "data-free")
DATASETS = ("mnist", "fashion-mnist")


def add(commands):
  p = commands.add_parser(
      "invert", help="find inputs that a trained classifier maps to chosen outputs",
      description="Optimise inputs of a trained classifier for every target and restart in one "
                  "compiled call. OUT.npz holds images float32 (T, R, 28, 28) in [0, 1], targets (T,), "
                  "target_prob (T, R), loss_history (S, T, R), outputs (T, R, C), objective (str). The last "
                  "stdout line is JSON: targets, restarts, steps, mean_target_prob, "
                  "min_class_mean_target_prob, seconds, compile_seconds, chunks, out. When the "
                  "call would not fit in memory, the restarts run in chunks that do, with the "
                  "same results; when even the results would not fit, it refuses up front.")
  p.add_argument("checkpoint", metavar="CHECKPOINT", help="a classifier checkpoint (jinvert train)")
  p.add_argument("--objective", choices=("class", "unit", "output"), default="class",
                 help="class: the target class (default); unit: one unit of --layer per target; "
                      "output: cross-entropy to a whole target vector (--target-file, else one-hot)")
  p.add_argument("--layer", help="sown layer for --objective unit (default: hidden1_pre, the first "
                                 "layer before its nonlinearity: the same maximiser as hidden1 "
                                 "whenever the unit can switch on, and never stuck at a dead "
                                 "ReLU; to shut units down, use the library's -unit('hidden1'))")
  p.add_argument("--targets", help="e.g. 0-9 (default), 8, 1,4,7; for units default all of them")
  p.add_argument("--target-file", help=".npy of target vectors (T, C) for --objective output")
  p.add_argument("--restarts", type=arguments.count, default=8,
                 help="independent starts per target (default 8)")
  p.add_argument("--steps", type=arguments.count,
                 help="optimiser steps (default: the preset's, raw 50, natural 500, data-free 200)")
  p.add_argument("--preset", choices=PRESETS, default="natural",
                 help="raw: seed 003's normalised gradient ascent on pixels; natural: optimise a "
                      "VAE's latent (default; the VAE learned from the data); data-free: the model "
                      "alone, dark smooth sparse images robust to jitter and blur")
  p.add_argument("--prior", help="an existing VAE checkpoint for --preset natural (default: the "
                                 "cache's, trained on first use, about 30 s)")
  p.add_argument("--dataset", choices=DATASETS,
                 help="the natural preset's prior for a checkpoint that names no dataset "
                      "(default: the checkpoint's own)")
  p.add_argument("--seed", type=arguments.seed, default=0, help="jax.random seed of the starts")
  p.add_argument("--data-dir", help="data folder, if the natural preset must train its prior")
  p.add_argument("--out", required=True, help="output .npz")
  p.add_argument("--png", help="also write a PNG grid, one row per target")
  p.set_defaults(run=run)


def prior_path(dataset: str) -> Path:
  """Where the cache keeps the natural preset's VAE for `dataset`."""
  from jinvert import data
  return data.cache_dir() / "priors" / f"vae-{dataset}-s0.msgpack"


def check_prior(dataset: str, path=None):
  """Checks, before any work, that the natural preset's prior can be had: `path` must be a VAE
  checkpoint of `dataset`; the cache's, if missing, must be writable. Returns its params or
  None (to be trained by `natural_prior`)."""
  from jinvert import files
  if path is not None:
    return _load_prior(path, dataset)
  cached = prior_path(dataset)
  if cached.exists():
    return _load_prior(cached, dataset)
  files.check_output_path(cached, "the prior cache (XDG_CACHE_HOME)")
  return None


def _load_prior(path, dataset):
  from jinvert import checkpoint
  params, meta = checkpoint.load_checkpoint(path, expect_model="vae")
  if meta.get("dataset") != dataset:
    raise JinvertError(f"{path}: prior trained on {meta.get('dataset')!r}, the model needs "
                       f"{dataset!r}")
  return params


def natural_prior(dataset: str, params=None, data_dir=None):
  """The natural preset's (VAE module, params) for `dataset`: `params` as checked by
  `check_prior`, else the cache's, trained on first use."""
  from jinvert import models, train
  if params is None:
    params, _ = train.load_or_train(prior_path(dataset), "vae", dataset, seed=0,
                                    data_dir=data_dir)
  return models.get_model("vae").module(), params


def _given(value, default):
  """An option's value, or `default` when it was left out (an empty string is a value)."""
  return default if value is None else value


def _targets(args, spec, apply_fn, params):
  """(objective or None for the preset's class objective, targets) from the arguments."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from jinvert import files, objectives

  if args.objective == "class":
    return None, arguments.parse_targets(_given(args.targets, "0-9"), spec.n_classes)
  if args.objective == "unit":
    layer = _given(args.layer, spec.layers[0])
    _, acts = jax.eval_shape(apply_fn, params, jnp.zeros((1,) + spec.input_shape))
    if layer not in acts:
      raise JinvertError(f"the model has no layer {layer!r}; valid layer names: "
                         f"{', '.join(sorted(acts))}")
    units = acts[layer].shape[-1]
    text = _given(args.targets, f"0-{units - 1}")
    return objectives.unit(layer), arguments.parse_targets(text, units, f"units of {layer!r}")
  if args.target_file is not None:
    targets = files.read_npy(args.target_file, "--target-file")
    return -objectives.cross_entropy_to(), targets[None] if targets.ndim == 1 else targets
  classes = arguments.parse_targets(_given(args.targets, "0-9"), spec.n_classes)
  return -objectives.cross_entropy_to(), np.eye(spec.n_classes, dtype=np.float32)[classes]


def run(args):
  import jax
  import jax.numpy as jnp
  import numpy as np

  from jinvert import checkpoint, invert, memory, models, objectives, presets
  from jinvert.commands import results
  from jinvert.files import Outputs

  params, meta = checkpoint.load_checkpoint(args.checkpoint)
  spec = models.require_task(meta["model"], "classifier", f"CHECKPOINT {args.checkpoint}",
                             {"regression": "use jinvert reconstruct",
                              "generator": "use jinvert generate"})
  apply_fn = models.apply_with_activations(spec.module(meta.get("init")))
  objective, targets = _targets(args, spec, apply_fn, params)
  steps = args.steps or {"raw": presets.raw().steps, "natural": presets.NATURAL_STEPS,
                         "data-free": presets.DATA_FREE_STEPS}[args.preset]
  targets = invert.validate(apply_fn, params, objective or objectives.class_logit(), targets,
                            spec.input_shape, steps, args.restarts)
  memory.require(invert.result_bytes(len(targets), args.restarts, steps, spec.input_shape,
                                     spec.n_classes), memory.host_available_bytes(),
                 f"the results of {len(targets)} targets x {args.restarts:,} restarts x "
                 f"{steps:,} steps", "use fewer --restarts, --steps or --targets")
  prior = None
  if args.preset == "natural":
    dataset = args.dataset or meta.get("dataset")
    if dataset not in DATASETS:
      raise JinvertError(f"CHECKPOINT {args.checkpoint} names no dataset for the natural "
                         "preset's prior; pass --dataset mnist or --dataset fashion-mnist")
    prior = check_prior(dataset, args.prior)
  outputs = Outputs(inputs=[(args.checkpoint, "CHECKPOINT"), (args.prior, "--prior"),
                            (args.target_file, "--target-file")])
  out = outputs.add(args.out, "--out")
  png = outputs.add(args.png, "--png") if args.png is not None else None

  # everything is checked: the work starts (the natural preset may train its prior first)
  preset = {"raw": presets.raw, "data-free": presets.data_free,
            "natural": lambda: presets.natural(*natural_prior(dataset, prior, args.data_dir))}[
                args.preset]()
  objective = objective or preset.objective
  result, timing = invert.timed_invert(
      apply_fn, params, objective, targets, key=jax.random.key(args.seed),
      input_shape=spec.input_shape, restarts=args.restarts, steps=steps,
      optimizer=preset.optimizer, parameterization=preset.parameterization,
      transform=preset.transform)
  results.check_finite(result.inputs, result.outputs, f"the inversion ({args.preset} preset, "
                       f"{steps} steps)")
  targets = np.asarray(targets)
  probs = jax.nn.softmax(jnp.asarray(result.outputs), axis=-1)
  if args.objective == "class":
    final_prob = probs[jnp.arange(len(targets)), :, targets]
  elif args.objective == "output":
    final_prob = probs[jnp.arange(len(targets)), :, jnp.argmax(targets, -1)]
  else:
    final_prob = jnp.full(result.outputs.shape[:2], jnp.nan)
  summary = results.image_results(
      outputs, out, png, result.inputs, targets, final_prob, result.loss_history, result.outputs,
      objective.name, timing, steps, class_targets=args.objective == "class",
      title=f"{spec.name} {args.preset}: {objective.name}",
      square=args.objective == "unit" and args.restarts == 1)
  summary.update(preset=args.preset, chunks=timing["chunks"])
  return summary
