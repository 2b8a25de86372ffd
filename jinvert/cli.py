"""The `jinvert` command line. Each command's last stdout line is one JSON object.

Bad input exits with code 2 and one line on stderr, no traceback.
"""

import argparse
import json
import sys

from jinvert.errors import JinvertError


class _Parser(argparse.ArgumentParser):
  """argparse, but a usage error is one line on stderr and exit code 2."""

  def error(self, message):
    sys.stderr.write(f"{self.prog}: error: {message}\n")
    raise SystemExit(2)


def _add_train(commands):
  p = commands.add_parser(
      "train", help="train one of the seeds' models and save a checkpoint",
      description="Train a registered model by its seed's recipe (mnist-mlp: Adam 1e-3, batch 100, "
                  "15 epochs; r2rt-mlp: Adagrad 0.01, summed cross-entropy, batch 1000, 2000 steps; "
                  "fashion-mlp: Adam 1e-3, batch 32, 10 epochs; linear: Adam 1e-3 on MSE, seed 004's "
                  "100 synthetic points, 100000 steps). Progress goes to stderr; the last stdout line "
                  "is JSON: model, dataset, test_accuracy, train_seconds, checkpoint "
                  "(and weight, bias for linear).")
  p.add_argument("model", metavar="MODEL", help="mnist-mlp, r2rt-mlp, fashion-mlp or linear")
  p.add_argument("--dataset", choices=("mnist", "fashion-mnist"),
                 help="training data (default: the model's own; linear uses seed 004's synthetic data)")
  p.add_argument("--epochs", type=int, help="override the recipe's epochs (or fixed step count)")
  p.add_argument("--seed", type=int, default=0, help="jax.random seed for init and shuffling")
  p.add_argument("--init", help="init scheme (mnist-mlp: glorot or seed-normal, the seed's stddev-1 "
                                "tf.random_normal)")
  p.add_argument("--data-dir", help="folder holding mnist/ and fashion-mnist/ (else JINVERT_DATA, "
                                    "the cache, or a download)")
  p.add_argument("--out", help="checkpoint path (default: checkpoints/MODEL-DATASET-sSEED.msgpack)")
  p.set_defaults(run=cmd_train)


def cmd_train(args):
  from jinvert import checkpoint, models, train

  spec = models.get_model(args.model)
  params, metadata = train.fit(spec.name, args.dataset, args.seed, args.epochs, args.init,
                               args.data_dir)
  out = args.out or f"checkpoints/{spec.name}-{metadata['dataset']}-s{args.seed}.msgpack"
  checkpoint.save_checkpoint(out, params, metadata)
  summary = {"model": spec.name, "dataset": metadata["dataset"],
             "test_accuracy": metadata["test_accuracy"],
             "train_seconds": round(metadata["train_seconds"], 3), "checkpoint": str(out)}
  if spec.name == "linear":
    layer = params["params"]["out"]
    summary.update(weight=float(layer["kernel"][0, 0]), bias=float(layer["bias"][0]))
  return summary


def parse_targets(text: str) -> list:
  """`0-9`, `3`, `1,4,7` or `0-3,8` -> a list of ints."""
  targets = []
  for part in text.split(","):
    bounds = part.strip().split("-")
    try:
      if len(bounds) == 1:
        targets.append(int(bounds[0]))
      elif len(bounds) == 2:
        lo, hi = int(bounds[0]), int(bounds[1])
        if hi < lo:
          raise ValueError
        targets.extend(range(lo, hi + 1))
      else:
        raise ValueError
    except ValueError:
      raise JinvertError(f"--targets: cannot read {part!r}; write e.g. 0-9, 8 or 1,4,7") from None
  return targets


def _add_invert(commands):
  p = commands.add_parser(
      "invert", help="find inputs that a trained classifier maps to chosen outputs",
      description="Optimise inputs of a trained classifier for every target and restart in one "
                  "compiled call. OUT.npz holds images float32 (T, R, 28, 28) in [0, 1], targets (T,), "
                  "target_prob (T, R), loss_history (S, T, R), outputs (T, R, C), objective (str). The last "
                  "stdout line is JSON: targets, restarts, steps, mean_target_prob, "
                  "min_class_mean_target_prob, seconds, compile_seconds, out.")
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
  p.add_argument("--restarts", type=int, default=8, help="independent starts per target (default 8)")
  p.add_argument("--steps", type=int, help="optimiser steps (default: the preset's, raw 50, "
                                           "natural 500)")
  p.add_argument("--preset", choices=("raw", "natural"), default="natural",
                 help="raw: seed 003's normalised gradient ascent on pixels; natural: optimise a "
                      "VAE's latent (default)")
  p.add_argument("--prior", help="VAE checkpoint for --preset natural (default: the cache's, "
                                 "trained on first use, about 30 s)")
  p.add_argument("--seed", type=int, default=0, help="jax.random seed of the starts")
  p.add_argument("--data-dir", help="data folder, if the natural preset must train its prior")
  p.add_argument("--out", required=True, help="output .npz")
  p.add_argument("--png", help="also write a PNG grid, one row per target")
  p.set_defaults(run=cmd_invert)


def natural_prior(dataset: str, path=None, data_dir=None):
  """The natural preset's VAE for `dataset`: `path`, or the cache's (trained on first use)."""
  from jinvert import data, models, train
  path = path or data.cache_dir() / "priors" / f"vae-{dataset}-s0.msgpack"
  params, _ = train.load_or_train(path, "vae", dataset, seed=0, data_dir=data_dir)
  return models.get_model("vae").module(), params


def cmd_invert(args):
  import jax
  import jax.numpy as jnp
  import numpy as np

  from jinvert import checkpoint, invert, models, objectives, presets

  params, meta = checkpoint.load_checkpoint(args.checkpoint)
  spec = models.get_model(meta["model"])
  if spec.name in ("linear", "vae", "mnist-cvae"):
    hint = {"linear": " (use jinvert reconstruct)", "mnist-cvae": " (use jinvert generate)"}
    raise JinvertError(f"jinvert invert takes a classifier checkpoint; {args.checkpoint} holds "
                       f"{spec.name!r}" + hint.get(spec.name, ""))
  module = spec.module(meta.get("init"))
  apply_fn = models.apply_with_activations(module)
  layer = None
  if args.objective == "class":
    objective = None  # the preset's own class objective
    targets = parse_targets(args.targets or "0-9")
  elif args.objective == "unit":
    layer = args.layer or spec.layers[0]
    objective = objectives.unit(layer)
    if args.targets:
      targets = parse_targets(args.targets)
    else:
      _, acts = jax.eval_shape(apply_fn, params, jnp.zeros((1,) + spec.input_shape))
      # an unknown layer is reported, with the valid names, by invert.validate below
      targets = list(range(acts[layer].shape[-1])) if layer in acts else [0]
  else:
    objective = -objectives.cross_entropy_to()
    if args.target_file:
      try:
        targets = np.load(args.target_file, allow_pickle=False)
      except (OSError, ValueError) as e:
        raise JinvertError(f"--target-file {args.target_file}: {e}") from None
      if targets.ndim == 1:
        targets = targets[None]
    else:
      targets = np.eye(10, dtype=np.float32)[parse_targets(args.targets or "0-9")]

  # everything is checked before the natural preset may spend half a minute on its prior
  invert.validate(apply_fn, params, objective or objectives.class_logit(), targets,
                  spec.input_shape, 1 if args.steps is None else args.steps, args.restarts)
  if args.preset == "raw":
    preset = presets.raw()
  else:
    preset = presets.natural(*natural_prior(meta["dataset"], args.prior, args.data_dir))
  steps = preset.steps if args.steps is None else args.steps
  objective = objective or preset.objective
  result, timing = invert.timed_invert(
      apply_fn, params, objective, targets, key=jax.random.key(args.seed),
      input_shape=spec.input_shape, restarts=args.restarts, steps=steps,
      optimizer=preset.optimizer, parameterization=preset.parameterization,
      transform=preset.transform)
  targets = np.asarray(targets)

  probs = jax.nn.softmax(result.outputs, axis=-1)
  if args.objective == "class":
    final_prob = probs[jnp.arange(len(targets)), :, targets]
  elif args.objective == "output":
    final_prob = probs[jnp.arange(len(targets)), :, jnp.argmax(targets, -1)]
  else:
    final_prob = jnp.full(result.outputs.shape[:2], jnp.nan)
  summary = save_images(args, result.inputs, targets, final_prob, result.loss_history,
                        result.outputs, objective.name, timing, steps,
                        class_targets=args.objective == "class",
                        title=f"{spec.name} {args.preset}: {objective.name}",
                        square=args.objective == "unit" and args.restarts == 1)
  summary["preset"] = args.preset
  return summary


def save_images(args, images, targets, target_prob, loss_history, outputs, objective: str, timing,
                steps: int, class_targets: bool, title: str, square: bool = False) -> dict:
  """Writes OUT.npz (and the PNG grid) for invert and generate; returns the JSON summary."""
  import numpy as np

  from jinvert import plots
  from jinvert.files import atomic_write_with

  images, targets = np.asarray(images, np.float32), np.asarray(targets)
  target_prob = np.asarray(target_prob, np.float32)
  arrays = {"images": images, "targets": targets, "target_prob": target_prob,
            "loss_history": np.asarray(loss_history, np.float32),
            "outputs": np.asarray(outputs, np.float32), "objective": np.array(objective)}
  atomic_write_with(args.out, lambda f: np.savez(f, **arrays))
  known = not np.all(np.isnan(target_prob))
  class_means = np.nanmean(target_prob, axis=1) if known else None
  summary = {"targets": [t.tolist() for t in targets], "restarts": images.shape[1],
             "steps": steps, "objective": objective,
             "mean_target_prob": float(class_means.mean()) if known else None,
             "min_class_mean_target_prob": float(class_means.min()) if known else None,
             "seconds": round(timing["seconds"], 4),
             "compile_seconds": round(timing["compile_seconds"], 4), "out": args.out}
  if args.png:
    if square:
      plots.save_grid(args.png, images, columns=int(np.ceil(np.sqrt(len(targets)))), title=title)
    else:
      plots.save_grid(args.png, images, summary["targets"] if class_targets else None, title)
    summary["png"] = args.png
  return summary


def _add_generate(commands):
  p = commands.add_parser(
      "generate", help="sample images of chosen digits from a conditional generator",
      description="Seed 000's 'model that does the opposite': decode z ~ N(0, I) with each target "
                  "digit through a trained mnist-cvae. OUT.npz and the JSON line are laid out as "
                  "jinvert invert's (restarts = samples, steps = 0, loss_history empty); "
                  "target_prob needs --classifier, else it is NaN.")
  p.add_argument("checkpoint", metavar="CHECKPOINT", help="an mnist-cvae checkpoint")
  p.add_argument("--targets", default="0-9", help="digits, e.g. 0-9 (default), 8, 1,4,7")
  p.add_argument("--samples", type=int, default=32, help="images per digit (default 32)")
  p.add_argument("--classifier", help="classifier checkpoint that scores target_prob")
  p.add_argument("--seed", type=int, default=0, help="jax.random seed of the latents")
  p.add_argument("--out", required=True, help="output .npz")
  p.add_argument("--png", help="also write a PNG grid, one row per digit")
  p.set_defaults(run=cmd_generate)


def cmd_generate(args):
  import jax
  import jax.numpy as jnp

  from jinvert import checkpoint, generate, models
  from jinvert.timing import time_compiled

  params, meta = checkpoint.load_checkpoint(args.checkpoint, expect_model="mnist-cvae")
  module = models.get_model("mnist-cvae").module()
  targets = jnp.asarray(parse_targets(args.targets), jnp.int32)
  if args.samples <= 0:
    raise JinvertError(f"--samples must be positive, got {args.samples}")
  bad = [int(t) for t in targets if not 0 <= t < module.n_classes]
  if bad:
    raise JinvertError(f"target {bad[0]} is outside the generator's {module.n_classes} classes "
                       f"(valid: 0-{module.n_classes - 1})")
  run = jax.jit(lambda p, k: generate.sample(module, p, targets, args.samples, k))
  images, compile_seconds, (seconds,) = time_compiled(run, (params, jax.random.key(args.seed)))
  timing = {"compile_seconds": compile_seconds, "seconds": seconds}
  outputs = jnp.full(images.shape[:2] + (module.n_classes,), jnp.nan)
  prob = jnp.full(images.shape[:2], jnp.nan)
  if args.classifier:
    c_params, c_meta = checkpoint.load_checkpoint(args.classifier)
    c_module = models.get_model(c_meta["model"]).module(c_meta.get("init"))
    outputs = jax.jit(c_module.apply)(c_params, images.reshape(-1, 28, 28)).reshape(
        images.shape[:2] + (-1,))
    prob = jax.nn.softmax(outputs)[jnp.arange(len(targets)), :, targets]
  return save_images(args, images, targets, prob, jnp.zeros((0,) + images.shape[:2]), outputs,
                     f"mnist-cvae sample (seed {args.seed})", timing, 0, class_targets=True,
                     title="mnist-cvae: z ~ N(0, I) decoded with each digit")


def _add_reconstruct(commands):
  p = commands.add_parser(
      "reconstruct", help="find the input of a regression model that gives a chosen output",
      description="Seed 004: find x0 with f(x0) = Y0 for a trained `linear` model, by gradient "
                  "descent through the inversion engine and by the closed form. With --activation "
                  "sigmoid the model is y = sigmoid(w x + b) and targets outside (0, 1) are reported "
                  "unreachable. The last stdout line is JSON: x0, closed_form_x0, iterations, "
                  "reachable, y_at_x0, relative_difference (and reason when unreachable).")
  p.add_argument("checkpoint", metavar="CHECKPOINT", help="a `linear` checkpoint")
  p.add_argument("--target", type=float, required=True, metavar="Y0", help="the wanted output")
  p.add_argument("--activation", choices=("none", "sigmoid"), default="none")
  p.add_argument("--lr", type=float, default=0.4, help="gradient descent step (seed 004: 0.4)")
  p.add_argument("--steps", type=int, default=200, help="iterations (seed 004: 200)")
  p.add_argument("--start", type=float, default=1.0, help="starting x (seed 004: 1)")
  p.add_argument("--png", help="plot x against the iteration, as seed 004 does")
  p.set_defaults(run=cmd_reconstruct)


def cmd_reconstruct(args):
  from jinvert import checkpoint, plots, regression

  params, _ = checkpoint.load_checkpoint(args.checkpoint, expect_model="linear")
  result = regression.reconstruct(params, args.target, args.activation, args.lr, args.steps,
                                  args.start)
  history = result.pop("x_history")
  if args.png and result["reachable"]:
    plots.save_curve(args.png, history, "iteration", "x0", reference=result["closed_form_x0"],
                     reference_label="closed form",
                     title=f"x0 for y0 = {args.target:g} ({args.activation})")
    result["png"] = args.png
  return result


def _add_bench(commands):
  p = commands.add_parser(
      "bench", help="benchmark the inversion engine on this machine's CPU or GPU",
      description="Times the inversion workload (mnist-mlp, class logit, box constraint, 10 targets x "
                  "R restarts x S steps) at several R, against the float32 matmul peak measured in "
                  "the same run, a seed-style Python loop and PyTorch (eager and torch.compile, if "
                  "installed). Tables go to stdout; the last line is JSON: backend, device_kind, "
                  "restarts, steps, image_steps_per_s, gflops, matmul_peak_gflops, peak_fraction, "
                  "compile_seconds, ratios {seed_loop, torch_eager, torch_compile}.")
  p.add_argument("--restarts", type=int, help="headline R (default 256 on cpu, 4096 on gpu)")
  p.add_argument("--steps", type=int, default=200, help="S (default 200)")
  p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
  p.add_argument("--precision", choices=("highest", "tf32", "bf16"), default="highest",
                 help="matmul precision (default highest: full float32)")
  p.add_argument("--sizes", help="restart counts for the size table, e.g. 1,32,256,1024")
  p.add_argument("--repeats", type=int, default=3, help="timed repeats (median, min-max)")
  p.add_argument("--no-references", action="store_true", help="skip the seed loop and PyTorch")
  p.add_argument("--largest-up-to", type=int, metavar="R_MAX",
                 help="also find the largest R (doubling from --restarts, at most R_MAX) whose "
                      "S-step inversion fits in device memory, running each size once")
  p.set_defaults(run=cmd_bench)


def cmd_bench(args):
  from jinvert import benchmark
  sizes = parse_targets(args.sizes) if args.sizes else None
  summary = benchmark.run_benchmark(args.restarts, args.steps, args.device, args.precision, sizes,
                                    args.repeats, not args.no_references, args.largest_up_to)
  summary.pop("sizes")
  return summary


def build_parser() -> argparse.ArgumentParser:
  parser = _Parser(prog="jinvert", description="Invert trained neural networks with JAX.")
  commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                   parser_class=_Parser)
  _add_train(commands)
  _add_invert(commands)
  _add_reconstruct(commands)
  _add_generate(commands)
  _add_bench(commands)
  return parser


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  try:
    summary = args.run(args)
  except JinvertError as e:
    sys.stderr.write(f"jinvert {args.command}: error: {e}\n")
    return 2
  print(json.dumps(summary))
  return 0
