"""`jinvert invert`: find inputs that a trained classifier maps to chosen outputs.

The classifier is a jinvert checkpoint or an ONNX file, with the input space the flags give
(`--input-range`, `--normalize`). The command parses and checks everything, declares its
outputs, runs the preset's search, and reports; the library does the work.
"""

from typing import Any, Callable, NamedTuple

import numpy as np

from jinvert.cli import arguments, cluster, resume
from jinvert.errors import JinvertError

HINTS = {"regression": "use jinvert reconstruct", "generator": "use jinvert generate"}


def _preset_help() -> str:
  from jinvert import presets
  lines = "; ".join(f"{name}: {spec.summary}" for name, spec in presets.REGISTRY.items())
  return (f"{lines}. Default: natural when the model's dataset is known (its checkpoint, or "
          "--dataset), else data-free for images and raw for features")


def _add_search(p):
  from jinvert import presets, priors
  p.add_argument("--objective", choices=("class", "unit", "channel", "neuron", "output"),
                 default="class",
                 help="class: the target class (default); unit: one unit of --layer per target; "
                      "channel: one channel of a convolutional --layer per target, its mean over "
                      "positions; neuron: that channel at the centre; output: cross-entropy to a "
                      "whole target vector (--target-file, else one-hot)")
  p.add_argument("--layer", help="activation for --objective unit, channel or neuron, and for "
                                 "--diversity (see jinvert layers MODEL; default: the model's "
                                 "first: hidden1_pre for jinvert MLPs, before the nonlinearity, "
                                 "so never stuck at a dead ReLU; for channels its first feature "
                                 "map; to shut units down use the library's -unit())")
  p.add_argument("--targets", help="e.g. 0-9 (default), 8, 1,4,7; for units and channels "
                                   "default all of them")
  p.add_argument("--diversity", type=arguments.finite, metavar="W",
                 help="add W x diversity at --layer (or the objective's layer, else the model's "
                      "last): the restarts of a target pushed apart (Lucid's diversity)")
  p.add_argument("--target-file", help=".npy of target vectors (T, C) for --objective output")
  p.add_argument("--restarts", type=arguments.count,
                 help="independent starts per target (default 8; 1 with --start)")
  steps = ", ".join(f"{name} {spec.steps}" for name, spec in presets.REGISTRY.items())
  p.add_argument("--steps", type=arguments.count,
                 help=f"optimiser steps (default: the preset's: {steps}, and "
                      f"{presets.COUNTERFACTUAL_STEPS} with --start)")
  p.add_argument("--preset", choices=tuple(presets.REGISTRY), help=_preset_help())
  drawing = ", ".join(f"{name} {spec.draws}" + (f" + {spec.pooled_draws} of a second recipe"
                                                  if spec.pooled_draws else "")
                      for name, spec in presets.REGISTRY.items() if spec.draws > 1)
  p.add_argument("--draws", type=arguments.count, metavar="D",
                 help=f"images drawn for each one kept: each target keeps the R of D x R "
                      f"restarts that the model is surest of, surest first (default: the "
                      f"preset's: {drawing}, the others 1; two recipes' draws are ranked "
                      f"by the preset's own score); for class and vector targets")
  p.add_argument("--batchnorm-prior", type=arguments.finite, metavar="W",
                 help=arguments.BATCHNORM_HELP)
  p.add_argument("--prior", help="an existing VAE checkpoint for --preset natural (default: the "
                                 "cache's, trained on first use, about 30 s)")
  p.add_argument("--dataset", choices=priors.DATASETS,
                 help="the data the model learned from, for a model that does not say (ONNX): "
                      "the natural preset's prior, and test:INDEX starts")
  p.add_argument("--seed", type=arguments.seed, default=0, help="jax.random seed of the starts")
  p.add_argument("--data-dir", help="data folder, if the natural preset must train its prior")


def _add_inputs(p):
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


def add(commands):
  p = commands.add_parser(
      "invert", help="find inputs that a trained classifier maps to chosen outputs",
      description="Optimise inputs of a trained classifier (a jinvert checkpoint or an ONNX "
                  "file) for every target and restart in one compiled call. OUT.npz holds "
                  "images float32 (T, R, *input shape) in display space, targets (T,), "
                  "target_prob (T, R), loss_history (S, T, R), outputs (T, R, C), objective (str), "
                  "and with --start, start and change_l2, change_linf (T, R). The last stdout "
                  "line is JSON: targets, restarts, steps, mean_target_prob, "
                  "min_class_mean_target_prob, seconds, compile_seconds, chunks, devices, "
                  "processes, preset, out "
                  "(and median_change_l2, median_change_linf, success_rate with --start). When "
                  "the call would not fit in memory the restarts run in chunks that do, with the "
                  "same results; when even the results would not fit, it refuses up front. The "
                  "lanes are split over every device: on the CPU one per core "
                  "(JAX_NUM_CPU_DEVICES=1 keeps one).")
  p.add_argument("checkpoint", metavar="MODEL",
                 help="a classifier checkpoint (jinvert train) or an .onnx file")
  _add_search(p)
  _add_inputs(p)
  p.add_argument("--out", required=True, help="output .npz")
  p.add_argument("--png", help="also write a PNG: a grid, one row per target (a per-feature "
                               "plot for 1-D inputs; start, after and change with --start)")
  resume.add(p, "every finished chunk of restarts (when the search runs in several: see "
                "'chunks' in the JSON)")
  cluster.add(p)
  p.set_defaults(run=run)


class _Job(NamedTuple):
  """Everything the search needs, checked."""
  clf: Any                 # the Classifier, in the input space the flags give
  model_fn: Callable       # the model on u in [0, 1] (a feature map's units flattened)
  objective: Any           # the objective the flags ask for, or None for the preset's
  diversity: Any           # --diversity's term, added to the objective, or None
  targets: Any             # checked against the model (`engine.validate`)
  preset: str              # a name in presets.REGISTRY, or "counterfactual"
  start: Any               # the --start input in display space, or None
  counterfactual: Any      # with --start, its recipe (presets.counterfactual), checked; or None
  restarts: int
  steps: int
  draws: int               # restarts drawn for each one kept (`engine.keep_best`)
  dataset: str | None
  prior: Any               # the natural prior's params as priors.check found them, or None
  batchnorm_weight: Any    # --batchnorm-prior, checked, or None for the preset's choice


def _given(value, default):
  """An option's value, or `default` when it was left out (an empty string is a value)."""
  return default if value is None else value


def _objective_and_targets(args, clf, model_fn):
  """(objective or None for the preset's class objective, targets) from the arguments."""
  import jax
  import jax.numpy as jnp

  from jinvert import files, objectives

  if args.target_file is not None and args.objective != "output":
    raise JinvertError("--target-file holds target vectors, for --objective output")
  if args.objective == "class":
    return None, arguments.parse_targets(_given(args.targets, "0-9"), clf.n_classes)
  if args.objective == "unit":
    layer = _given(args.layer, clf.layers[0] if clf.layers else "")
    _, acts = jax.eval_shape(model_fn, clf.params, jnp.zeros((1,) + clf.input_shape))
    if layer not in acts:
      raise JinvertError(f"the model has no layer {layer!r}; valid layer names: "
                         f"{', '.join(sorted(acts)) or 'none'}")
    units = int(np.prod(acts[layer].shape[1:]))
    text = _given(args.targets, f"0-{units - 1}")
    return objectives.unit(layer), arguments.parse_targets(text, units, f"units of {layer!r}")
  if args.objective in ("channel", "neuron"):
    return _channel_objective(args, clf)
  if args.target_file is not None:
    targets = files.read_npy(args.target_file, "--target-file")
    if targets.size == 0:
      raise JinvertError(f"--target-file {args.target_file}: holds no target vectors")
    return -objectives.cross_entropy_to(), targets[None] if targets.ndim == 1 else targets
  classes = arguments.parse_targets(_given(args.targets, "0-9"), clf.n_classes)
  return -objectives.cross_entropy_to(), np.eye(clf.n_classes, dtype=np.float32)[classes]


def _channel_objective(args, clf):
  """(channel or neuron objective of a feature map, channel targets), checked against the
  model's layers."""
  from jinvert import objectives
  layers = {layer["name"]: layer for layer in clf.layer_shapes()}
  maps = [name for name, layer in layers.items() if layer["kind"] == "feature map"]
  layer = _known_layer(_given(args.layer, maps[0] if maps else ""), layers)
  if layers[layer]["kind"] != "feature map":
    raise JinvertError(f"--objective {args.objective}: layer {layer!r} is dense, shaped "
                       f"{tuple(layers[layer]['shape'])}; channel objectives read feature maps: "
                       f"{', '.join(maps) or 'this model has none'} (for units, --objective unit)")
  channels = layers[layer]["channels"]
  make = objectives.channel if args.objective == "channel" else objectives.neuron
  targets = arguments.parse_targets(_given(args.targets, f"0-{channels - 1}"), channels,
                                    f"channels of {layer!r}")
  return make(layer, axis=clf.channel_axis), targets


def _known_layer(layer, names, flag: str = ""):
  """`layer`, if the model has it; else a JinvertError naming the layers it has."""
  if layer not in names:
    raise JinvertError(f"{flag}the model has no layer {layer!r}; valid layer names: "
                       f"{', '.join(names) or 'none'}")
  return layer


def _diversity(args, clf, objective):
  """--diversity's term, W x diversity at the objective's layer (else --layer, else the
  model's last), or None."""
  from jinvert import objectives
  if not args.diversity:
    return None
  names = [layer["name"] for layer in clf.layer_shapes()]
  layer = (objective.layer if objective is not None else None) or args.layer or \
      (names[-1] if names else None)
  _known_layer(layer, names, "--diversity: ")
  return args.diversity * objectives.diversity(layer, axis=clf.channel_axis)


def _flat_units(model_fn, layer):
  """The model with `layer` flattened, so a unit index counts every value of a feature map."""
  def fn(params, x):
    out, acts = model_fn(params, x)
    return out, dict(acts, **{layer: acts[layer].reshape(acts[layer].shape[0], -1)})
  return fn


def _preset_and_start(args, clf, dataset):
  """(preset name, --start input in display space or None), checked against the model."""
  from jinvert import presets
  from jinvert.cli import inputs
  if args.start is not None:
    if args.preset is not None or args.objective != "class" or args.batchnorm_prior is not None:
      raise JinvertError("--start finds counterfactuals with its own recipe: drop --preset and "
                         "--batchnorm-prior, and use the class objective")
    return "counterfactual", inputs.start_input(args.start, clf.space, dataset, args.data_dir)
  if args.max_change is not None or args.distance_weight is not None:
    raise JinvertError("--max-change and --distance-weight go with --start")
  name = args.preset or presets.default_name(clf.space, dataset)
  presets.get(name).check(clf.space)
  return name, None


def _prior(args, preset: str, dataset):
  from jinvert import presets, priors
  if preset == "counterfactual" or not presets.get(preset).uses_data:
    return None
  if dataset not in priors.DATASETS:
    raise JinvertError(f"MODEL {args.checkpoint} names no dataset for the {preset} preset's "
                       "prior; pass --dataset mnist or --dataset fashion-mnist")
  return priors.check(dataset, args.prior)


def _checked(args) -> _Job:
  """Reads and checks every argument and input file, before any work."""
  from jinvert import classifiers, engine, memory, objectives, presets
  from jinvert.cli import inputs

  clf = classifiers.load_model(args.checkpoint, "MODEL", HINTS)
  clf = clf.with_space(inputs.input_space(clf.space, args.input_range, args.normalize))
  dataset = args.dataset or clf.dataset
  model_fn = clf.unit_fn()
  objective, targets = _objective_and_targets(args, clf, model_fn)
  if args.objective == "unit":
    model_fn = _flat_units(model_fn, objective.layer)
  preset, start = _preset_and_start(args, clf, dataset)
  restarts = _given(args.restarts, 8 if start is None else 1)
  steps = args.steps or (presets.COUNTERFACTUAL_STEPS if start is not None
                         else presets.get(preset).steps)
  counterfactual = None if start is None else presets.counterfactual(
      clf.space.unit(start), arguments.max_change(args.max_change), args.distance_weight, steps)
  searched = objective or objectives.class_logit()  # a preset's objectives read class targets
  targets = engine.validate(model_fn, clf.params, searched, targets, clf.input_shape, steps,
                            restarts)
  draws = _draws(args, preset if start is None else None, searched.target_kind)
  drawn = draws + (presets.get(preset).pooled_draws if start is None and objective is None
                   else 0)
  memory.require(engine.result_bytes(len(targets), drawn * restarts, steps, clf.input_shape,
                                     clf.n_classes), memory.host_available_bytes(),
                 f"the results of {len(targets)} targets x {drawn * restarts:,} restarts x "
                 f"{steps:,} steps", "use fewer --restarts, --draws, --steps or --targets")
  return _Job(clf, model_fn, objective, _diversity(args, clf, objective), targets, preset, start,
              counterfactual, restarts, steps, draws, dataset, _prior(args, preset, dataset),
              arguments.batchnorm_weight(args.batchnorm_prior, clf, f"MODEL {args.checkpoint}"))


def _draws(args, preset: str | None, kind: str | None) -> int:
  """--draws, else the preset's (one with --start); one where no probability ranks the
  restarts (units, channels, values)."""
  from jinvert import presets, target_kinds
  if target_kinds.has_probability(kind):
    return args.draws or (1 if preset is None else presets.get(preset).draws)
  if args.draws and args.draws > 1:
    raise JinvertError(f"--draws {args.draws} keeps the restarts whose target is most probable; "
                       f"{kind} targets have no probability: leave --draws out")
  return 1


def _outputs(args):
  """The declared outputs: (Outputs, --out, --png or None)."""
  from jinvert import distributed
  from jinvert.files import Outputs
  inputs = [(args.checkpoint, "MODEL"), (args.prior, "--prior"),
            (args.target_file, "--target-file")]
  if args.start is not None and not args.start.startswith("test:"):
    inputs.append((args.start, "--start"))
  if args.input_range is not None and args.input_range.endswith(".npy"):
    inputs.append((args.input_range, "--input-range"))
  outputs = Outputs(inputs=inputs, writes=distributed.is_writer())
  return (outputs, outputs.add(args.out, "--out"),
          outputs.add(args.png, "--png") if args.png is not None else None)


def _preset(job: _Job, args):
  """The preset's recipe (the natural preset may train its prior first)."""
  from jinvert import presets, priors
  if job.counterfactual is not None:
    return job.counterfactual
  prior = priors.load(job.dataset, job.prior, args.data_dir) \
      if presets.get(job.preset).uses_data else None
  return presets.build(job.preset, job.clf.space, prior, job.steps, job.clf.batchnorm,
                       job.batchnorm_weight)


def run(args):
  import jax

  from jinvert import engine
  from jinvert.cli import progress, results

  job = _checked(args)
  outputs, out, png = _outputs(args)
  work = resume.work_dir(args, args.checkpoint)
  # everything is checked: the work starts
  preset = _preset(job, args)
  if job.objective is not None:
    preset = preset.searching_for(job.objective)
  if job.diversity is not None:
    preset = preset.plus(job.diversity)
  drawn = job.draws + sum(n for _, n in preset.pooled)
  shown = f"inverting {len(job.targets)} x {job.restarts}" + (
      f" (each the best of {drawn})" if drawn > 1 else "")
  with progress.bar(shown, job.steps, "steps") as advance:
    result, timing = engine.timed_invert(
        job.model_fn, job.clf.params, preset.objective, job.targets,
        key=jax.random.key(args.seed),
        input_shape=job.clf.input_shape, restarts=job.restarts, steps=job.steps,
        optimizer=preset.optimizer, parameterization=preset.parameterization,
        transform=preset.transform, draws=job.draws, pooled=preset.pooled, score=preset.score,
        on_steps=advance,
        piece=None if work is None else engine.chunk_cache(work.cached, "restarts"))
  results.check_finite(result.inputs, result.outputs, f"the inversion ({job.preset} preset, "
                       f"{job.steps} steps)")
  return dict(_report(job, args, preset.objective, result, timing, outputs, out, png),
              draws=job.draws)


def _report(job: _Job, args, objective, result, timing, outputs, out, png) -> dict:
  """Writes OUT.npz and the PNG; returns the JSON summary."""
  from jinvert import target_kinds
  from jinvert.cli import results

  targets = np.asarray(job.targets)
  final_prob = target_kinds.final_probabilities(objective.target_kind, result.outputs, targets)
  images = job.clf.space.display(np.asarray(result.inputs, np.float32))
  extra = {}
  if job.start is not None:
    change = (images - job.start).reshape(images.shape[:2] + (-1,))
    extra = {"start": job.start, "change_l2": np.linalg.norm(change, axis=-1),
             "change_linf": np.abs(change).max(-1)}
  figure = _figure(job, images, targets, objective.name, args.objective) if png else None
  summary = results.image_results(
      outputs, out, png, images, targets, final_prob, result.loss_history, result.outputs,
      objective.name, timing, job.steps, figure=figure, extra_arrays=extra)
  summary.update(preset=job.preset, chunks=timing["chunks"], devices=timing["devices"])
  if job.start is not None:
    summary.update(median_change_l2=float(np.median(extra["change_l2"])),
                   median_change_linf=float(np.median(extra["change_linf"])),
                   success_rate=float(np.mean(np.asarray(final_prob) >= 0.9)))
  return summary


def _figure(job: _Job, images, targets, formula: str, objective: str) -> bytes:
  """The PNG for the inversion's result (see --png)."""
  from jinvert import plots
  space = job.clf.space
  labels = [t.tolist() for t in targets] if objective == "class" else None
  title = f"{job.clf.name} {job.preset}: {formula}"
  if space.layout.kind == "features":
    return plots.features_png(images, labels or list(range(len(images))), space.low, space.high,
                              title)
  shown = plots.displayable(space.unit(images), space.layout.kind)  # displayed in [0, 1]
  if job.start is not None:
    return plots.counterfactual_png(plots.displayable(space.unit(job.start), space.layout.kind),
                                    shown, labels, title)
  if objective == "unit" and job.restarts == 1:
    return plots.grid_png(shown, columns=int(np.ceil(np.sqrt(len(targets)))), title=title)
  return plots.grid_png(shown, labels, title)
