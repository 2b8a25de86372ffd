"""Bring your own model: a PyTorch CNN, exported by PyTorch to ONNX, inverted by jinvert.

    pip install -e '.[import]'        # PyTorch and onnx
    python experiments/onnx_models.py [--epochs 2] [--restarts 32] [--out runs/onnx_models]

Trains a small CNN in PyTorch on MNIST (conv 16 - max-pool - conv 32 - max-pool - linear, on
inputs in [0, 1], 2 epochs of Adam), exports it with torch.onnx.export (its own exporter; the
TorchScript one, which needs nothing beyond PyTorch), checks jinvert's interpreter against
onnxruntime where it is installed, then runs the command line on the file:

    jinvert invert torch_cnn.onnx --targets 0-9 --restarts 32              (data-free: the default
                                                                            for a model with no dataset)
    jinvert invert torch_cnn.onnx --targets 0-9 --restarts 32 --preset raw
    jinvert invert torch_cnn.onnx --targets 0-9 --restarts 32 --preset natural --dataset mnist

and scores each: the target probability (the PyTorch model's), and the agreement of jinvert's
independently trained CNN (`jinvert train cnn`) with the target. Writes the .onnx, the .npz and
.png of each run, and metrics.json under --out.
"""

import time
from pathlib import Path

import numpy as np

import common
from jinvert import data, metrics
from jinvert.cli import main as jinvert_main


def train_torch_cnn(ds, epochs: int, seed: int):
  import torch
  torch.manual_seed(seed)
  model = torch.nn.Sequential(
      torch.nn.Conv2d(1, 16, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
      torch.nn.Conv2d(16, 32, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
      torch.nn.Flatten(), torch.nn.Linear(32 * 5 * 5, 10))
  optimizer = torch.optim.Adam(model.parameters(), 1e-3)
  x = torch.tensor(ds.train_images[:, None])
  y = torch.tensor(ds.train_labels, dtype=torch.long)
  generator = torch.Generator().manual_seed(seed)
  for epoch in range(epochs):
    order = torch.randperm(len(x), generator=generator)
    for i in range(0, len(x), 128):
      batch = order[i:i + 128]
      loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
      optimizer.zero_grad()
      loss.backward()
      optimizer.step()
    common.log(f"torch cnn: epoch {epoch + 1}/{epochs}, last batch loss {float(loss):.4f}")
  model.eval()
  with torch.no_grad():
    predicted = model(torch.tensor(ds.test_images[:, None])).argmax(-1).numpy()
  return model, float(np.mean(predicted == ds.test_labels))


def export(model, path: Path):
  import torch
  path.parent.mkdir(parents=True, exist_ok=True)
  torch.onnx.export(model, (torch.zeros(1, 1, 28, 28),), str(path), dynamo=False,
                    input_names=["image"], output_names=["logits"],
                    dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})


def main():
  parser = common.parser(__doc__, "runs/onnx_models", restarts=32)
  parser.add_argument("--epochs", type=int, default=2)
  args = parser.parse_args()
  out = Path(args.out)
  ds = data.load_dataset("mnist", args.data_dir)
  t0 = time.perf_counter()
  model, accuracy = train_torch_cnn(ds, args.epochs, args.seed)
  train_seconds = time.perf_counter() - t0
  onnx_path = out / "torch_cnn.onnx"
  export(model, onnx_path)

  from jinvert.onnx_import import load_onnx
  loaded = load_onnx(onnx_path)
  sample = ds.test_images[:256, None]
  ours = np.asarray(loaded.apply_fn(loaded.params, sample)[0])
  check = {"opset": loaded.opset, "ops": None}
  import onnx
  check["ops"] = sorted({n.op_type for n in onnx.load(str(onnx_path)).graph.node})
  try:
    import onnxruntime
    theirs = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(
        None, {"image": sample})[0]
    check["max_abs_difference_from_onnxruntime"] = float(np.max(np.abs(ours - theirs)))
  except ImportError:
    check["max_abs_difference_from_onnxruntime"] = None

  judge_fn, judge_params, judge_meta = common.classifier("cnn", "mnist", args.checkpoints, 0,
                                                         args.data_dir)
  rows = {}
  for name, extra in (("data-free (default)", []), ("raw", ["--preset", "raw"]),
                      ("natural (uses data)", ["--preset", "natural", "--dataset", "mnist"])):
    stem = name.split()[0]
    argv = ["invert", str(onnx_path), "--targets", "0-9", "--restarts", str(args.restarts),
            "--seed", str(args.seed), "--out", str(out / f"{stem}.npz"),
            "--png", str(out / f"{stem}.png"), *extra]
    common.log("jinvert " + " ".join(argv))
    t0 = time.perf_counter()
    if jinvert_main(argv) != 0:
      raise SystemExit(f"jinvert {' '.join(argv)} failed")
    wall = time.perf_counter() - t0
    with np.load(out / f"{stem}.npz") as f:
      images, target_prob = f["images"], f["target_prob"]
    agreement = metrics.agreement(lambda p, x: judge_fn(p, x)[0], judge_params,
                                  images.reshape(10, args.restarts, 28, 28), np.arange(10))
    rows[name] = {"mean_target_prob": float(target_prob.mean()),
                  "min_class_mean_target_prob": float(target_prob.mean(1).min()),
                  "cnn_agreement": float(np.mean(agreement)),
                  "min_class_cnn_agreement": float(np.min(agreement)), "wall_seconds": wall}
  common.write_json(out / "metrics.json", {
      "torch_cnn": {"test_accuracy": accuracy, "train_seconds": train_seconds,
                    "epochs": args.epochs, **check},
      "judge": {"model": "cnn", "test_accuracy": judge_meta["test_accuracy"]}, "rows": rows})
  print(f"PyTorch CNN: test accuracy {accuracy:.4f} ({train_seconds:.0f} s); exported to "
        f"{onnx_path} (opset {check['opset']}, ops {', '.join(check['ops'])}); jinvert vs "
        f"onnxruntime on 256 test images: max |difference| "
        f"{check['max_abs_difference_from_onnxruntime']}")
  print(f"10 digits x {args.restarts} restarts; agreement is jinvert's independent CNN's "
        f"(test accuracy {judge_meta['test_accuracy']:.4f})")
  print("| preset | mean p(target) | min class p | CNN agreement | min class agr. | wall s |")
  print("|---|---|---|---|---|---|")
  for name, r in rows.items():
    print(f"| {name} | {r['mean_target_prob']:.4f} | {r['min_class_mean_target_prob']:.4f} | "
          f"{100 * r['cnn_agreement']:.1f}% | {100 * r['min_class_cnn_agreement']:.1f}% | "
          f"{r['wall_seconds']:.1f} |")


if __name__ == "__main__":
  main()
