"""Seed 004: reconstruct the input of a trained linear model from its output, then the sigmoid.

    python experiments/linear_reconstruction.py [--y0 100] [--out runs/linear]

Trains (or loads) `linear` on seed 004's data (x ~ U(0, 1000), y = 0.4 x - 50 U(0, 1)), finds
x0 with f(x0) = y0 by gradient descent through the engine (lr 0.4, 200 iterations from x0 = 1)
and by the closed form (y0 - b) / w, then does the same for y = sigmoid(w x + b) at targets
inside (0, 1) and reports targets outside it unreachable. Writes x0_linear.png (x0 against the
iteration, as the seed's plot), x0_sigmoid.png and metrics.json; prints a table.
"""

from pathlib import Path

import common
from jinvert import plots, regression, train


def main():
  parser = common.parser(__doc__, "runs/linear", data=False)
  parser.add_argument("--y0", type=float, default=100.0)
  args = parser.parse_args()
  out = Path(args.out)
  params, meta = train.load_or_train(Path(args.checkpoints) / f"linear-seed004-linear-s{args.seed}.msgpack",
                                     "linear", None, args.seed, log=common.log)
  w, b = regression.linear_weights(params)
  rows = {}
  cases = [("none", args.y0)] + [("sigmoid", y) for y in (0.1, 0.5, 0.9, 0.0, 1.0, 1.5)]
  for activation, y0 in cases:
    result = regression.reconstruct(params, y0, activation)
    history = result.pop("x_history")
    rows[f"{activation} y0={y0:g}"] = result
    if result["reachable"] and y0 in (args.y0, 0.5):
      plots.save_curve(out / f"x0_{'linear' if activation == 'none' else 'sigmoid'}.png", history,
                       "iteration", "x0", reference=result["closed_form_x0"],
                       reference_label="closed form (y0 - b) / w",
                       title=f"gradient descent on x for y0 = {y0:g} ({activation})")
  common.write_json(out / "metrics.json", {"weight": w, "bias": b, "cases": rows})
  print(f"linear model: w = {w:.6f}, b = {b:.4f} (data: y = 0.4 x - 50 U(0, 1))")
  print("| model | y0 | reachable | x0 (descent) | closed form | relative difference | f(x0) |")
  print("|---|---|---|---|---|---|---|")
  for (activation, y0), r in zip(cases, rows.values()):
    if r["reachable"]:
      print(f"| {activation} | {y0:g} | yes | {r['x0']:.4f} | {r['closed_form_x0']:.4f} | "
            f"{r['relative_difference']:.2e} | {r['y_at_x0']:.6g} |")
    else:
      print(f"| {activation} | {y0:g} | no: {r['reason']} | - | - | - | - |")
  print(f"wrote {out}/")


if __name__ == "__main__":
  main()
