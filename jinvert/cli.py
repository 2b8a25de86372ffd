"""The `jinvert` command line. Each command's last stdout line is one JSON object.

Bad input exits with code 2 and one line on stderr, no traceback.
"""

import argparse
import dataclasses
import json
import sys
import time

import jax

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
  from jinvert import checkpoint, data, models, train, __version__

  spec = models.get_model(args.model)
  recipe = train.RECIPES[spec.name]
  if args.epochs is not None:
    if args.epochs <= 0:
      raise JinvertError(f"--epochs must be positive, got {args.epochs}")
    recipe = dataclasses.replace(recipe, epochs=args.epochs, steps=None)
  key = jax.random.key(args.seed)
  init_key, data_key, shuffle_key = jax.random.split(key, 3)
  if spec.dataset is None:
    if args.dataset is not None:
      raise JinvertError(f"model {spec.name!r} trains on seed 004's synthetic data; drop --dataset")
    dataset_name = "seed004-linear"
    x, y = train.seed004_linear_data(data_key)
    train_split = test_split = (x, y)
  else:
    dataset_name = args.dataset or spec.dataset
    ds = data.load_dataset(dataset_name, args.data_dir)
    train_split, test_split = (ds.train_images, ds.train_labels), (ds.test_images, ds.test_labels)
  out = args.out or f"checkpoints/{spec.name}-{dataset_name}-s{args.seed}.msgpack"
  init = args.init or spec.inits[0]
  module = spec.module(init)
  params = spec.init_params(init_key, init)

  t0 = time.perf_counter()
  state, history = train.train_and_evaluate(module, params, recipe, train_split, test_split,
                                            shuffle_key)
  seconds = time.perf_counter() - t0
  final = history[-1]
  summary = {"model": spec.name, "dataset": dataset_name,
             "test_accuracy": final.get("test_accuracy"), "train_seconds": round(seconds, 3),
             "checkpoint": str(out)}
  if spec.name == "linear":
    layer = state.params["params"]["out"]
    summary.update(weight=float(layer["kernel"][0, 0]), bias=float(layer["bias"][0]))
  metadata = {"model": spec.name, "init": init, "dataset": dataset_name, "seed": args.seed,
              "recipe": dataclasses.asdict(recipe), "test_accuracy": final.get("test_accuracy"),
              "test_loss": final["test_loss"], "train_seconds": seconds,
              "jinvert_version": __version__, "jax_version": jax.__version__,
              "backend": jax.default_backend()}
  checkpoint.save_checkpoint(out, state.params, metadata)
  return summary


def build_parser() -> argparse.ArgumentParser:
  parser = _Parser(prog="jinvert", description="Invert trained neural networks with JAX.")
  commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                   parser_class=_Parser)
  _add_train(commands)
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
