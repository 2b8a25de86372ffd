"""`jinvert bench`: the inversion engine against the machine's limits and other ways."""

import contextlib
import io
import sys

from jinvert.cli import arguments, cluster
from jinvert.errors import JinvertError


def add(commands):
  p = commands.add_parser(
      "bench", help="benchmark the inversion engine on this machine's CPU or GPU",
      description="Times the inversion workload (mnist-mlp or --model, class logit, box constraint, "
                  "10 targets x R restarts x S steps) at several R, against the float32 matmul peak measured in "
                  "the same run, a seed-style Python loop and PyTorch (eager and torch.compile, if "
                  "installed). Tables go to stdout; the last line is JSON: backend, device_kind, "
                  "restarts, steps, image_steps_per_s, gflops, matmul_peak_gflops, peak_fraction, "
                  "compile_seconds, ratios {seed_loop, torch_eager, torch_compile}.")
  p.add_argument("--model", default="mnist-mlp", metavar="NAME|FILE.onnx",
                 help="the classifier to invert: a zoo name (its initial weights, seed 0; e.g. "
                      "lenet5, mnist-cnn) or an ONNX file. PyTorch's references exist for "
                      "mnist-mlp, fashion-mlp, mnist-cnn, lenet5 and lenet5-half "
                      "(default mnist-mlp)")
  p.add_argument("--restarts", type=arguments.count,
                 help="headline R (default 256 on cpu, 4096 on gpu)")
  p.add_argument("--steps", type=arguments.count, default=200, help="S (default 200)")
  p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
  p.add_argument("--precision", choices=("highest", "tf32", "bf16"), default="highest",
                 help="matmul precision (default highest: full float32)")
  p.add_argument("--sizes", help="restart counts for the size table, e.g. 1,32,256,1024")
  p.add_argument("--repeats", type=arguments.count, default=3,
                 help="timed repeats (median, min-max)")
  p.add_argument("--no-references", action="store_true", help="skip the seed loop and PyTorch")
  p.add_argument("--largest-up-to", type=arguments.count, metavar="R_MAX",
                 help="also find the largest R (doubling from --restarts, at most R_MAX) whose "
                      "S-step inversion fits in device memory, running each size once")
  cluster.add(p)
  p.set_defaults(run=run)


def run(args):
  from jinvert import bench, distributed
  sizes = None
  if args.sizes is not None:
    sizes = arguments.parse_targets(args.sizes, flag="--sizes", example="1,32,256,1024")
    if 0 in sizes:
      raise JinvertError("--sizes: every size must be at least 1 restart")
  writer = distributed.is_writer()  # process 0 prints the tables; the others only compute
  with contextlib.redirect_stdout(sys.stdout if writer else io.StringIO()):
    summary = bench.run_benchmark(args.restarts, args.steps, args.device, args.precision, sizes,
                                  args.repeats, not args.no_references, args.largest_up_to,
                                  log=bench.log_line if writer else lambda line: None,
                                  model=args.model)
  summary.pop("sizes")
  return summary
