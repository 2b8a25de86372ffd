"""The `jinvert` commands, a module each: `add(subparsers)` declares its arguments and `run(args)`
does the work, returning the JSON summary.

Every `run` follows the same order: check every argument, load and check every input, declare
every output (`jinvert.files.Outputs`), and only then work; the outputs are written together at
the end. Heavy imports wait inside `run`, so `--help` stays fast.
"""

from jinvert.commands import bench, distill, generate, invert, reconstruct, train

COMMANDS = (train, invert, reconstruct, generate, distill, bench)
