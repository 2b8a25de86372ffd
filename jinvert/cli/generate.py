"""`jinvert generate`: sample images of chosen digits from the conditional generator."""

from jinvert.cli import arguments, cluster


def add(commands):
  p = commands.add_parser(
      "generate", help="sample images of chosen digits from a conditional generator",
      description="Seed 000's 'model that does the opposite': decode z ~ N(0, I) with each target "
                  "digit through a trained mnist-cvae. OUT.npz and the JSON line are laid out as "
                  "jinvert invert's (restarts = samples, steps = 0, loss_history empty); "
                  "target_prob needs --classifier, else it is NaN.")
  p.add_argument("checkpoint", metavar="CHECKPOINT", help="an mnist-cvae checkpoint")
  p.add_argument("--targets", default="0-9", help="digits, e.g. 0-9 (default), 8, 1,4,7")
  p.add_argument("--samples", type=arguments.count, default=32,
                 help="images per digit (default 32)")
  p.add_argument("--classifier", help="classifier checkpoint that scores target_prob")
  p.add_argument("--seed", type=arguments.seed, default=0, help="jax.random seed of the latents")
  p.add_argument("--out", required=True, help="output .npz")
  p.add_argument("--png", help="also write a PNG grid, one row per digit")
  cluster.add(p)
  p.set_defaults(run=run)


def run(args):
  import jax
  import jax.numpy as jnp

  from jinvert import checkpoint, engine, generate, memory, models, plots
  from jinvert.cli import results
  from jinvert import distributed
  from jinvert.files import Outputs
  from jinvert.timing import compile_timed, time_calls

  params, _ = checkpoint.load_checkpoint(args.checkpoint, expect_model="mnist-cvae")
  spec = models.get_model("mnist-cvae")
  module = spec.module()
  targets = jnp.asarray(arguments.parse_targets(args.targets, spec.n_classes), jnp.int32)
  if args.classifier is not None:
    c_params, c_meta = checkpoint.load_checkpoint(args.classifier)
    c_spec = models.require_task(c_meta["model"], "classifier", f"--classifier {args.classifier}")
    c_apply = c_spec.module(c_meta.get("init")).apply
  n = len(targets)
  memory.require(engine.result_bytes(n, args.samples, 0, spec.input_shape, spec.n_classes, 0),
                 memory.host_available_bytes(), f"{n} targets x {args.samples:,} samples",
                 "use fewer --samples or --targets")
  outputs = Outputs(inputs=[(args.checkpoint, "CHECKPOINT"), (args.classifier, "--classifier")],
                    writes=distributed.is_writer())
  out = outputs.add(args.out, "--out")
  png = outputs.add(args.png, "--png") if args.png is not None else None

  def sample_and_score(key):
    images = generate.sample(module, params, targets, args.samples, key)
    if args.classifier is None:
      nan = jnp.full(images.shape[:2], jnp.nan)
      return images, jnp.full(images.shape[:2] + (spec.n_classes,), jnp.nan), nan
    logits = c_apply(c_params, images.reshape((-1,) + spec.input_shape)).reshape(
        images.shape[:2] + (-1,))
    return images, logits, jax.nn.softmax(logits)[jnp.arange(n), :, targets]

  key = jax.random.key(args.seed)
  compiled, compile_seconds = compile_timed(jax.jit(sample_and_score), (key,))
  memory.require(memory.compiled_bytes(compiled), memory.available_bytes(),
                 f"sampling {n} targets x {args.samples:,} samples", "use fewer --samples")
  (images, logits, prob), (seconds,) = time_calls(compiled, (key,))
  results.check_finite(images, jnp.nan_to_num(logits, nan=0.0), "sampling")
  figure = plots.grid_png(images, [int(t) for t in targets],
                          "mnist-cvae: z ~ N(0, I) decoded with each digit") if png else None
  return results.image_results(
      outputs, out, png, images, targets, prob, jnp.zeros((0,) + images.shape[:2]), logits,
      f"mnist-cvae sample (seed {args.seed})",
      {"compile_seconds": compile_seconds, "seconds": seconds}, 0, figure=figure)
