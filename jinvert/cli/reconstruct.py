"""`jinvert reconstruct`: seed 004's input for a wanted output of a regression model."""

from jinvert.cli import arguments


def add(commands):
  p = commands.add_parser(
      "reconstruct", help="find the input of a regression model that gives a chosen output",
      description="Seed 004: find x0 with f(x0) = Y0 for a trained `linear` model, by gradient "
                  "descent through the inversion engine and by the closed form. With --activation "
                  "sigmoid the model is y = sigmoid(w x + b) and targets outside (0, 1) are reported "
                  "unreachable. The last stdout line is JSON: x0, closed_form_x0, iterations, "
                  "reachable, y_at_x0, relative_difference (and reason when unreachable). A "
                  "descent that leaves the finite numbers (too large a --lr) exits 2.")
  p.add_argument("checkpoint", metavar="CHECKPOINT", help="a `linear` checkpoint")
  p.add_argument("--target", type=arguments.finite, required=True, metavar="Y0",
                 help="the wanted output")
  p.add_argument("--activation", choices=("none", "sigmoid"), default="none")
  p.add_argument("--lr", type=arguments.positive, default=0.4,
                 help="gradient descent step (seed 004: 0.4)")
  p.add_argument("--steps", type=arguments.count, default=200, help="iterations (seed 004: 200)")
  p.add_argument("--start", type=arguments.finite, default=1.0, help="starting x (seed 004: 1)")
  p.add_argument("--png", help="plot x against the iteration, as seed 004 does")
  p.set_defaults(run=run)


def run(args):
  from jinvert import checkpoint, engine, memory, plots, regression
  from jinvert.files import Outputs

  params, _ = checkpoint.load_checkpoint(args.checkpoint, expect_model="linear")
  memory.require(engine.result_bytes(1, 1, args.steps, (1,), 1, 1, record_inputs=True),
                 memory.host_available_bytes(), f"{args.steps:,} steps", "use fewer --steps")
  outputs = Outputs(inputs=[(args.checkpoint, "CHECKPOINT")])
  png = outputs.add(args.png, "--png") if args.png is not None else None
  result = regression.reconstruct(params, args.target, args.activation, args.lr, args.steps,
                                  args.start)
  history = result.pop("x_history")
  if png and result["reachable"]:
    outputs.commit({png: plots.curve_png(
        history, "iteration", "x0", reference=result["closed_form_x0"],
        reference_label="closed form", title=f"x0 for y0 = {args.target:g} ({args.activation})")})
    result["png"] = str(png)
  return result
