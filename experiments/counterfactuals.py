"""Counterfactuals: the smallest change that turns a real digit into each other digit.

    python experiments/counterfactuals.py [--digits 100] [--seed 0] [--out runs/counterfactuals]

For the first --digits MNIST test images and each of the 9 classes other than the image's
label, mnist-mlp's input is optimised from the image (the `counterfactual` preset: Adam 0.01 on
the target's log-probability capped at 0.95, minus a weight times the L2 distance moved, box
[0, 1]; or inside an L2 ball). All 900 searches run in one compiled call. A search succeeds
when the target's probability reaches 0.9; the change is the L2 (and L-infinity) distance from
the start. The rows sweep the distance weight and the ball radius; the default preset is the
row with the smallest median change among those that succeed at least 99% of the time.
Writes metrics.json and examples.png (a few digits turned into every class) under --out.
"""

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import common
from jinvert import data, engine, plots, presets


def search(apply_fn, steps, **recipe):
  """A jitted function of (params, starts (D, 28, 28), targets (D, 9), key): every digit's
  counterfactuals towards its targets, one restart each."""
  def one(params, start, targets, keys):
    preset = presets.counterfactual(start, steps=steps, **recipe)
    run = engine.make_inversion(apply_fn, preset.objective, preset.optimizer,
                                preset.parameterization, preset.steps, (28, 28), record_every=0)
    return run(params, targets, keys)

  def batch(params, starts, targets, key):
    keys = jax.random.split(key, targets.size).reshape(targets.shape + (1,))
    return jax.vmap(one, in_axes=(None, 0, 0, 0))(params, starts, targets, keys)
  return jax.jit(batch)


def main():
  parser = common.parser(__doc__, "runs/counterfactuals")
  parser.add_argument("--digits", type=int, default=100, help="test digits (100)")
  parser.add_argument("--steps", type=int, default=presets.COUNTERFACTUAL_STEPS)
  args = parser.parse_args()
  out = Path(args.out)
  apply_fn, params, meta = common.classifier("mnist-mlp", "mnist", args.checkpoints, 0, args.data_dir)
  ds = data.load_dataset("mnist", args.data_dir)
  starts = jnp.asarray(ds.test_images[:args.digits])
  labels = ds.test_labels[:args.digits]
  targets = jnp.asarray(np.array([[c for c in range(10) if c != y] for y in labels]), jnp.int32)
  rows = {f"distance weight {w:g}": {"distance_weight": w} for w in (0.1, 0.3, 1.0, 3.0)}
  rows.update({f"L2 ball {r:g}": {"max_change": ("l2", r)} for r in (2.0, 3.0, 4.0)})
  report = {}
  for name, recipe in rows.items():
    run = search(apply_fn, args.steps, **recipe)
    key = jax.random.key(args.seed)
    jax.block_until_ready(run(params, starts, targets, key))  # compile
    t0 = time.perf_counter()
    result = jax.block_until_ready(run(params, starts, targets, key))
    seconds = time.perf_counter() - t0
    prob = np.asarray(jax.nn.softmax(result.outputs, -1)[..., 0, :])
    prob = np.take_along_axis(prob, np.asarray(targets)[..., None], -1)[..., 0]   # (D, 9)
    change = np.asarray(result.inputs[:, :, 0] - starts[:, None]).reshape(len(labels), 9, -1)
    l2, linf = np.linalg.norm(change, axis=-1), np.abs(change).max(-1)
    success = prob >= 0.9
    report[name] = {"success_rate": float(success.mean()),
                    "median_l2": float(np.median(l2)), "median_l2_of_successes":
                    float(np.median(l2[success])) if success.any() else None,
                    "median_linf": float(np.median(linf)), "seconds": seconds,
                    "searches": int(success.size)}
    common.log(f"{name}: {report[name]}")
    if name == "distance weight 0.1":
      shown = np.asarray(result.inputs[:6, :, 0])          # (6 digits, 9 targets, 28, 28)
      grid = np.concatenate([np.asarray(starts[:6])[:, None], shown], 1)
      plots.save_grid(out / "examples.png", grid, [f"{y}->" for y in labels[:6]],
                      "mnist-mlp counterfactuals: a test digit, then each other class "
                      "(distance weight 0.1)")
  chosen = min((r for r in report if report[r]["success_rate"] >= 0.99),
               key=lambda r: report[r]["median_l2"], default=None)
  common.write_json(out / "metrics.json", {"model": meta, "digits": args.digits,
                                           "steps": args.steps, "rows": report, "chosen": chosen})
  print(f"mnist-mlp (test accuracy {meta['test_accuracy']:.4f}): {args.digits} test digits x "
        f"9 other classes, {args.steps} steps, success = target probability >= 0.9")
  print("| recipe | success rate | median L2 change | median L2 (successes) | median Linf | seconds |")
  print("|---|---|---|---|---|---|")
  for name, r in report.items():
    print(f"| {name} | {100 * r['success_rate']:.1f}% | {r['median_l2']:.3f} | "
          f"{r['median_l2_of_successes'] or float('nan'):.3f} | {r['median_linf']:.3f} | "
          f"{r['seconds']:.2f} |")
  print(f"chosen (smallest median change at >= 99% success): {chosen}")


if __name__ == "__main__":
  main()
