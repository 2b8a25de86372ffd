"""`jinvert train`: train a model of the zoo by its recipe and save a checkpoint."""

from jinvert.cli import arguments


def add(commands):
  import argparse
  import textwrap

  from jinvert import data, models
  zoo = "\n".join(textwrap.fill(f"{spec.name}: {spec.summary}; on {spec.dataset}, "
                                 f"{spec.recipe.describe()}", 88, initial_indent="  ",
                                 subsequent_indent="      ")
                   for spec in models.REGISTRY.values())
  p = commands.add_parser(
      "train", help="train a model of the zoo and save a checkpoint",
      formatter_class=argparse.RawDescriptionHelpFormatter,
      description=textwrap.fill(
          "Train a model of the zoo by its recipe. Progress goes to stderr; the last stdout "
          "line is JSON: model, dataset, test_accuracy, train_seconds, checkpoint, and what the "
          "model reports (weight and bias for linear).", 88) + f"\n\nmodels:\n{zoo}")
  p.add_argument("model", metavar="MODEL", help=", ".join(models.REGISTRY))
  p.add_argument("--dataset", choices=tuple(data.DATASETS),
                 help="training data (default: the model's own); its inputs must be the model's")
  p.add_argument("--epochs", type=arguments.count,
                 help="override the recipe's epochs (or fixed step count)")
  p.add_argument("--seed", type=arguments.seed, default=0,
                 help="jax.random seed for init and shuffling")
  inits = "; ".join(f"{spec.name}: {', '.join(spec.inits)}" for spec in models.REGISTRY.values()
                    if len(spec.inits) > 1)
  p.add_argument("--init", help=f"init scheme, the first being the default ({inits}; "
                                "seed-normal is the seed's stddev-1 tf.random_normal)")
  p.add_argument("--data-dir", help="folder holding mnist/ and fashion-mnist/ (else JINVERT_DATA, "
                                    "the cache, or a download)")
  p.add_argument("--out", help="checkpoint path (default: checkpoints/MODEL-DATASET-sSEED.msgpack)")
  p.set_defaults(run=run)


def run(args):
  from jinvert import checkpoint, models, train
  from jinvert.files import Outputs

  spec = models.get_model(args.model)
  spec.module(args.init)  # an unknown init is named before any work
  dataset = args.dataset or spec.dataset
  outputs = Outputs()
  default = f"checkpoints/{spec.name}-{dataset}-s{args.seed}.msgpack"
  out = outputs.add(default if args.out is None else args.out, "--out")
  params, metadata = train.fit(spec.name, args.dataset, args.seed, args.epochs, args.init,
                               args.data_dir)
  checkpoint.check_finite(params, f"training {spec.name} diverged")
  outputs.commit({out: checkpoint.checkpoint_bytes(params, metadata)})
  summary = {"model": spec.name, "dataset": metadata["dataset"],
             "test_accuracy": metadata["test_accuracy"],
             "train_seconds": round(metadata["train_seconds"], 3), "checkpoint": str(out)}
  return {**summary, **(spec.report(params) if spec.report else {})}
