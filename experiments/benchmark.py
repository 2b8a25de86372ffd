"""The accelerator benchmark; the same as `jinvert bench` (see `jinvert bench --help`).

    python experiments/benchmark.py [--restarts R] [--steps S] [--device cpu|gpu] [--precision ...]
    XLA_FLAGS=--xla_force_host_platform_device_count=4 python experiments/benchmark.py --sizes 256

Results and the exact commands are kept in experiments/BENCHMARKS.md.
"""

import sys

from jinvert.cli import main

if __name__ == "__main__":
  sys.exit(main(["bench"] + sys.argv[1:]))
