"""`jinvert invert`: find inputs that a trained classifier maps to chosen outputs.

The classifier is a jinvert checkpoint or an ONNX file. The optimiser works on u in [0, 1]
for every input value; the input in display space is LOW + (HIGH - LOW) u (`--input-range`),
and the model sees (display - MEAN) / STD (`--normalize`). Images are saved in display space.
"""

from pathlib import Path

import numpy as np

from jinvert import arguments
from jinvert.errors import JinvertError

PRESETS = ("raw", "natural", "data-free")
DATASETS = ("mnist", "fashion-mnist")
HINTS = {"regression": "use jinvert reconstruct", "generator": "use jinvert generate"}


def add(commands):
  p = commands.add_parser(
      "invert", help="find inputs that a trained classifier maps to chosen outputs",
      description="Optimise inputs of a trained classifier (a jinvert checkpoint or an ONNX "
                  "file) for every target and restart in one compiled call. OUT.npz holds "
                  "images float32 (T, R, *input shape) in display space, targets (T,), "
                  "target_prob (T, R), loss_history (S, T, R), outputs (T, R, C), objective (str), "
                  "and with --start, start and change_l2, change_linf (T, R). The last stdout "
                  "line is JSON: targets, restarts, steps, mean_target_prob, "
                  "min_class_mean_target_prob, seconds, compile_seconds, chunks, devices, preset, out "
                  "(and median_change_l2, median_change_linf, success_rate with --start). When "
                  "the call would not fit in memory the restarts run in chunks that do, with the "
                  "same results; when even the results would not fit, it refuses up front. The "
                  "lanes are split over every device: on the CPU one per core "
                  "(JAX_NUM_CPU_DEVICES=1 keeps one).")
  p.add_argument("checkpoint", metavar="MODEL",
                 help="a classifier checkpoint (jinvert train) or an .onnx file")
  p.add_argument("--objective", choices=("class", "unit", "output"), default="class",
                 help="class: the target class (default); unit: one unit of --layer per target; "
                      "output: cross-entropy to a whole target vector (--target-file, else one-hot)")
  p.add_argument("--layer", help="activation for --objective unit (default: the model's first: "
                                 "hidden1_pre for jinvert MLPs, before the nonlinearity, so never "
                                 "stuck at a dead ReLU; any intermediate tensor of an ONNX "
                                 "graph by name; to shut units down use the library's -unit())")
  p.add_argument("--targets", help="e.g. 0-9 (default), 8, 1,4,7; for units default all of them")
  p.add_argument("--target-file", help=".npy of target vectors (T, C) for --objective output")
  p.add_argument("--restarts", type=arguments.count,
                 help="independent starts per target (default 8; 1 with --start)")
  p.add_argument("--steps", type=arguments.count,
                 help="optimiser steps (default: the preset's: raw 50, natural 500, data-free "
                      "200, and 300 with --start)")
  p.add_argument("--preset", choices=PRESETS,
                 help="raw: seed 003's normalised gradient ascent on pixels; natural: optimise a "
                      "VAE's latent (the VAE learned from the data; 28x28 grayscale models); "
                      "data-free: the model alone, dark smooth sparse images robust to jitter "
                      "and blur. Default: natural when the model's dataset is known (its "
                      "checkpoint, or --dataset), else data-free for images and raw for features")
  p.add_argument("--prior", help="an existing VAE checkpoint for --preset natural (default: the "
                                 "cache's, trained on first use, about 30 s)")
  p.add_argument("--dataset", choices=DATASETS,
                 help="the data the model learned from, for a model that does not say (ONNX): "
                      "the natural preset's prior, and test:INDEX starts")
  p.add_argument("--input-range", metavar="LOW,HIGH",
                 help="the model's input range in display space (default 0,1), or an .npy of "
                      "per-feature bounds shaped (2, *input shape)")
  p.add_argument("--normalize", metavar="MEAN,STD",
                 help="the model sees (x - MEAN) / STD: one mean and one std for every channel, or "
                      "C means then C stds (C channels, or features for a 1-D input)")
  p.add_argument("--start", metavar="FILE|test:INDEX",
                 help="counterfactuals: start from this input (.npy in display space, .png, or "
                      "test:INDEX of the dataset's test set) and find the smallest change that "
                      "makes each target probable")
  p.add_argument("--max-change", metavar="l2:R|linf:R",
                 help="with --start: keep the change within this L2 or L-infinity radius "
                      "(in [0, 1] units per value)")
  p.add_argument("--distance-weight", type=arguments.finite, metavar="W",
                 help="with --start: the weight of the L2 distance moved (default 0.3, or 0 "
                      "with --max-change)")
  p.add_argument("--seed", type=arguments.seed, default=0, help="jax.random seed of the starts")
  p.add_argument("--data-dir", help="data folder, if the natural preset must train its prior")
  p.add_argument("--out", required=True, help="output .npz")
  p.add_argument("--png", help="also write a PNG: a grid, one row per target (a per-feature "
                               "plot for 1-D inputs; start, after and change with --start)")
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


def _numbers(text: str, flag: str) -> list:
  try:
    values = [float(v) for v in text.split(",")]
  except ValueError:
    raise JinvertError(f"{flag}: cannot read {text!r}; write comma-separated numbers") from None
  if not all(np.isfinite(values)):
    raise JinvertError(f"{flag}: every number must be finite, got {text!r}")
  return values


def display_range(text, input_shape):
  """(low, high) arrays broadcastable to one input, from `--input-range`."""
  from jinvert import files
  if text is None:
    return np.float32(0.0), np.float32(1.0)
  if text.endswith(".npy"):
    bounds = files.read_npy(text, "--input-range").astype(np.float32)
    if bounds.shape != (2,) + tuple(input_shape):
      raise JinvertError(f"--input-range {text}: shaped {bounds.shape}, the model needs "
                         f"(2, {', '.join(map(str, input_shape))})")
    low, high = bounds
  else:
    values = _numbers(text, "--input-range")
    if len(values) != 2:
      raise JinvertError(f"--input-range: give LOW,HIGH (two numbers) or an .npy of bounds, got "
                         f"{text!r}")
    low, high = np.float32(values[0]), np.float32(values[1])
  if not np.all(np.isfinite(low) & np.isfinite(high)) or np.any(low >= high):
    raise JinvertError("--input-range: every LOW must be below its HIGH, and finite")
  return low, high


def normalization(text, input_shape, layout):
  """(mean, std) arrays broadcastable to one input, from `--normalize`."""
  if text is None:
    return np.float32(0.0), np.float32(1.0)
  values = _numbers(text, "--normalize")
  c = layout.channels
  if len(values) not in (2, 2 * c):
    raise JinvertError(f"--normalize has {len(values)} numbers; this model's {c} "
                       f"{'features' if layout.kind == 'features' else 'channels'} need 2 (one "
                       f"mean, one std) or {2 * c} ({c} means, then {c} stds)")
  half = len(values) // 2
  mean, std = np.asarray(values[:half], np.float32), np.asarray(values[half:], np.float32)
  if np.any(std <= 0):
    raise JinvertError("--normalize: every std must be above 0")
  if half > 1 and layout.channel_axis is not None:
    shape = [1] * len(input_shape)
    shape[layout.channel_axis] = half
    mean, std = mean.reshape(shape), std.reshape(shape)
  return mean.squeeze() if half == 1 else mean, std.squeeze() if half == 1 else std


def start_input(text, input_shape, low, high, dataset, data_dir):
  """The --start input in display space, as float32 shaped like one input."""
  from jinvert import files
  if text.startswith("test:"):
    from jinvert import data
    if dataset is None:
      raise JinvertError(f"--start {text}: the model names no dataset; pass --dataset")
    try:
      index = int(text[5:])
    except ValueError:
      raise JinvertError(f"--start {text}: write test:INDEX, e.g. test:0") from None
    test = data.load_dataset(dataset, data_dir).test_images
    if not 0 <= index < len(test):
      raise JinvertError(f"--start {text}: the {dataset} test set has images 0-{len(test) - 1}")
    image = low + (high - low) * test[index]
  elif text.lower().endswith(".png"):
    image = _read_png(text, input_shape)
    image = low + (high - low) * image
  else:
    image = files.read_npy(text, "--start").astype(np.float32)
  if image.squeeze().shape == tuple(d for d in input_shape if d != 1):
    image = image.reshape(input_shape)  # (28, 28) for a (1, 28, 28) model, and so on
  if image.shape != tuple(input_shape):
    raise JinvertError(f"--start {text}: shaped {image.shape}, the model takes inputs of shape "
                       f"{tuple(input_shape)}")
  if not np.all(np.isfinite(image)):
    raise JinvertError(f"--start {text}: holds NaN or inf")
  if np.any(image < low) or np.any(image > high):
    raise JinvertError(f"--start {text}: values outside the input range "
                       f"[{float(np.min(low)):g}, {float(np.max(high)):g}] (see --input-range)")
  return image


def _read_png(path, input_shape):
  """A PNG as floats in [0, 1], gray (H, W) or colour (H, W, C), laid out like the model."""
  try:
    import matplotlib.image
    image = np.asarray(matplotlib.image.imread(path), np.float32)
  except FileNotFoundError:
    raise JinvertError(f"--start {path}: no such file") from None
  except Exception as e:  # Pillow raises many types for a file that is not a PNG
    raise JinvertError(f"--start {path}: not a readable PNG ({type(e).__name__})") from None
  if image.dtype.kind != "f" or image.max() > 1:
    image = image / 255.0
  if image.ndim == 3 and image.shape[-1] == 4:
    image = image[..., :3]
  channels = [s for s in input_shape if s <= 4]
  if image.ndim == 3 and (len(input_shape) == 2 or channels == [1]):
    image = image.mean(-1)  # a colour PNG for a grayscale model
  if len(input_shape) == 3 and input_shape[0] <= 4 and image.ndim == 3:
    image = np.moveaxis(image, -1, 0)  # a PNG is channels-last
  return image


def parse_max_change(text):
  if text is None:
    return None
  kind, _, radius = text.partition(":")
  try:
    value = float(radius)
  except ValueError:
    value = float("nan")
  if kind not in ("l2", "linf") or not np.isfinite(value) or value <= 0:
    raise JinvertError(f"--max-change: write l2:RADIUS or linf:RADIUS with a radius above 0, got "
                       f"{text!r}")
  return kind, value


def _targets(args, clf, apply_fn, params):
  """(objective or None for the preset's class objective, targets) from the arguments."""
  import jax
  import jax.numpy as jnp

  from jinvert import files, objectives

  if args.objective == "class":
    return None, arguments.parse_targets(_given(args.targets, "0-9"), clf.n_classes)
  if args.objective == "unit":
    layer = _given(args.layer, clf.layers[0] if clf.layers else "")
    _, acts = jax.eval_shape(apply_fn, params, jnp.zeros((1,) + clf.input_shape))
    if layer not in acts:
      raise JinvertError(f"the model has no layer {layer!r}; valid layer names: "
                         f"{', '.join(sorted(acts)) or 'none'}")
    units = int(np.prod(acts[layer].shape[1:]))
    text = _given(args.targets, f"0-{units - 1}")
    return objectives.unit(layer), arguments.parse_targets(text, units, f"units of {layer!r}")
  if args.target_file is not None:
    targets = files.read_npy(args.target_file, "--target-file")
    return -objectives.cross_entropy_to(), targets[None] if targets.ndim == 1 else targets
  classes = arguments.parse_targets(_given(args.targets, "0-9"), clf.n_classes)
  return -objectives.cross_entropy_to(), np.eye(clf.n_classes, dtype=np.float32)[classes]


def _flat_units(apply_fn, layer):
  """The model with `layer` flattened, so a unit index counts every value of a feature map."""
  def fn(params, x):
    out, acts = apply_fn(params, x)
    return out, dict(acts, **{layer: acts[layer].reshape(acts[layer].shape[0], -1)})
  return fn


def _preset_name(args, clf, layout, dataset):
  if args.preset is not None:
    return args.preset
  if dataset is not None and clf.input_shape in ((28, 28), (1, 28, 28), (28, 28, 1)):
    return "natural"
  return "raw" if layout.kind == "features" else "data-free"


def run(args):
  import jax
  import jax.numpy as jnp

  from jinvert import classifiers, invert, memory, objectives, presets, progress
  from jinvert.commands import results
  from jinvert.files import Outputs

  clf = classifiers.load(args.checkpoint, "MODEL", HINTS)
  layout = classifiers.layout(clf.input_shape)
  dataset = args.dataset or clf.dataset
  low, high = display_range(args.input_range, clf.input_shape)
  mean, std = normalization(args.normalize, clf.input_shape, layout)

  def model(params, u):  # the engine optimises u in [0, 1]; the model sees its own inputs
    return clf.apply_fn(params, (low + (high - low) * u - mean) / std)

  apply_fn = model
  objective, targets = _targets(args, clf, apply_fn, clf.params)
  if objective is not None and objective.layer is not None:
    apply_fn = _flat_units(apply_fn, objective.layer)
  start = None
  if args.start is not None:
    if args.preset is not None or args.objective != "class":
      raise JinvertError("--start finds counterfactuals with its own recipe: drop --preset, and "
                         "use the class objective")
    start = start_input(args.start, clf.input_shape, low, high, dataset, args.data_dir)
    preset_name = "counterfactual"
  else:
    if args.max_change is not None or args.distance_weight is not None:
      raise JinvertError("--max-change and --distance-weight go with --start")
    preset_name = _preset_name(args, clf, layout, dataset)
  max_change = parse_max_change(args.max_change)
  if preset_name in ("data-free", "natural") and layout.kind == "features":
    raise JinvertError(f"the {preset_name} preset needs images; this model takes {clf.input_shape[0]} "
                       "features: use --preset raw")
  restarts = _given(args.restarts, 8 if start is None else 1)
  steps = args.steps or {"raw": presets.raw().steps, "natural": presets.NATURAL_STEPS,
                         "data-free": presets.DATA_FREE_STEPS,
                         "counterfactual": presets.COUNTERFACTUAL_STEPS}[preset_name]
  targets = invert.validate(apply_fn, clf.params, objective or objectives.class_logit(), targets,
                            clf.input_shape, steps, restarts)
  memory.require(invert.result_bytes(len(targets), restarts, steps, clf.input_shape,
                                     clf.n_classes), memory.host_available_bytes(),
                 f"the results of {len(targets)} targets x {restarts:,} restarts x "
                 f"{steps:,} steps", "use fewer --restarts, --steps or --targets")
  prior = None
  if preset_name == "natural":
    if dataset not in DATASETS:
      raise JinvertError(f"MODEL {args.checkpoint} names no dataset for the natural preset's "
                         "prior; pass --dataset mnist or --dataset fashion-mnist")
    if int(np.prod(clf.input_shape)) != 784 or layout.channels != 1:
      raise JinvertError(f"the natural preset's prior draws 28x28 grayscale images; this model "
                         f"takes {clf.input_shape}: use --preset data-free or raw")
    prior = check_prior(dataset, args.prior)
  inputs = [(args.checkpoint, "MODEL"), (args.prior, "--prior"), (args.target_file, "--target-file")]
  if args.start is not None and not args.start.startswith("test:"):
    inputs.append((args.start, "--start"))
  if args.input_range is not None and args.input_range.endswith(".npy"):
    inputs.append((args.input_range, "--input-range"))
  outputs = Outputs(inputs=inputs)
  out = outputs.add(args.out, "--out")
  png = outputs.add(args.png, "--png") if args.png is not None else None

  # everything is checked: the work starts (the natural preset may train its prior first)
  axes = layout.spatial_axes or (-2, -1)
  if preset_name == "counterfactual":
    preset = presets.counterfactual((start - low) / (high - low), max_change, args.distance_weight)
  elif preset_name == "natural":
    vae, vae_params = natural_prior(dataset, prior, args.data_dir)
    preset = presets.natural(vae, vae_params, image_shape=clf.input_shape, axes=axes)
  elif preset_name == "data-free":
    preset = presets.data_free(axes=axes)
  else:
    preset = presets.raw()
  objective = objective or preset.objective
  with progress.bar(f"inverting {len(targets)} x {restarts}", steps, "steps") as advance:
    result, timing = invert.timed_invert(
        apply_fn, clf.params, objective, targets, key=jax.random.key(args.seed),
        input_shape=clf.input_shape, restarts=restarts, steps=steps, optimizer=preset.optimizer,
        parameterization=preset.parameterization, transform=preset.transform, on_steps=advance)
  results.check_finite(result.inputs, result.outputs, f"the inversion ({preset_name} preset, "
                       f"{steps} steps)")
  targets = np.asarray(targets)
  probs = jax.nn.softmax(jnp.asarray(result.outputs), axis=-1)
  if args.objective == "class":
    final_prob = probs[jnp.arange(len(targets)), :, targets]
  elif args.objective == "output":
    final_prob = probs[jnp.arange(len(targets)), :, jnp.argmax(targets, -1)]
  else:
    final_prob = jnp.full(result.outputs.shape[:2], jnp.nan)
  images = low + (high - low) * np.asarray(result.inputs, np.float32)
  extra = {}
  if start is not None:
    change = (images - start).reshape(images.shape[:2] + (-1,))
    extra = {"start": start, "change_l2": np.linalg.norm(change, axis=-1),
             "change_linf": np.abs(change).max(-1)}
  figure = _figure(images, targets, layout, low, high, start, extra, clf.name, preset_name,
                   objective.name, args.objective, restarts) if png is not None else None
  summary = results.image_results(
      outputs, out, png, images, targets, final_prob, result.loss_history, result.outputs,
      objective.name, timing, steps, figure=figure, extra_arrays=extra)
  summary.update(preset=preset_name, chunks=timing["chunks"], devices=timing["devices"])
  if start is not None:
    summary.update(median_change_l2=float(np.median(extra["change_l2"])),
                   median_change_linf=float(np.median(extra["change_linf"])),
                   success_rate=float(np.mean(np.asarray(final_prob) >= 0.9)))
  return summary


def _figure(images, targets, layout, low, high, start, extra, name, preset, formula, objective,
            restarts) -> bytes:
  """The PNG for the inversion's result (see --png)."""
  from jinvert import plots
  labels = [t.tolist() for t in targets] if objective == "class" else None
  title = f"{name} {preset}: {formula}"
  if layout.kind == "features":
    return plots.features_png(images, labels or list(range(len(images))), low, high, title)
  unit = (images - low) / (high - low)  # displayed in [0, 1]
  shown = plots.displayable(unit, layout.kind)
  if start is not None:
    return plots.counterfactual_png(plots.displayable((start - low) / (high - low), layout.kind),
                                    shown, labels, title)
  if objective == "unit" and restarts == 1:
    return plots.grid_png(shown, columns=int(np.ceil(np.sqrt(len(targets)))), title=title)
  return plots.grid_png(shown, labels, title)
