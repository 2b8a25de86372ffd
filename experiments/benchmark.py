"""The accelerator benchmark; the same as `jinvert bench` (see `jinvert bench --help`).

    python experiments/benchmark.py [--restarts R] [--steps S] [--device cpu|gpu] [--precision ...]
    JAX_NUM_CPU_DEVICES=1 python experiments/benchmark.py --sizes 256   # one CPU device

Results and the exact commands are kept in experiments/BENCHMARKS.md.
"""

import sys

from jinvert.cli import main

if __name__ == "__main__":
  sys.exit(main(["bench"] + sys.argv[1:]))
