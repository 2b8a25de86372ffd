"""`jinvert train`: train one of the seeds' models and save a checkpoint."""

from jinvert import arguments


def add(commands):
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
  p.add_argument("--epochs", type=arguments.count,
                 help="override the recipe's epochs (or fixed step count)")
  p.add_argument("--seed", type=arguments.seed, default=0,
                 help="jax.random seed for init and shuffling")
  p.add_argument("--init", help="init scheme (mnist-mlp: glorot or seed-normal, the seed's stddev-1 "
                                "tf.random_normal)")
  p.add_argument("--data-dir", help="folder holding mnist/ and fashion-mnist/ (else JINVERT_DATA, "
                                    "the cache, or a download)")
  p.add_argument("--out", help="checkpoint path (default: checkpoints/MODEL-DATASET-sSEED.msgpack)")
  p.set_defaults(run=run)


def run(args):
  from jinvert import checkpoint, models, train
  from jinvert.files import Outputs

  spec = models.get_model(args.model)
  spec.module(args.init)  # an unknown init is named before any work
  dataset = args.dataset or spec.dataset or "seed004-linear"
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
  if spec.name == "linear":
    layer = params["params"]["out"]
    summary.update(weight=float(layer["kernel"][0, 0]), bias=float(layer["bias"][0]))
  return summary
