"""Command-line values, checked where they are read: counts, seeds, numbers, target lists, radii.

Each `argparse` type below raises `argparse.ArgumentTypeError`, which the parser turns into one
line naming the flag. Bounds keep every value inside what the engine can represent: a seed is
a uint32, a step count fits the loop's int32 counter, a float is finite and fits float32.
"""

import argparse
import math

import numpy as np

from jinvert.errors import JinvertError

MAX_SEED = 2 ** 32 - 1
MAX_COUNT = 2 ** 31 - 1
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _int(text: str) -> int:
  try:
    return int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None


def count(text: str) -> int:
  """A positive integer that fits an int32 (restarts, steps, samples, epochs, images)."""
  value = _int(text)
  if not 1 <= value <= MAX_COUNT:
    raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_COUNT:,}, got {text}")
  return value


def seed(text: str) -> int:
  """A jax.random seed: a whole number from 0 to 2^32 - 1."""
  value = _int(text)
  if not 0 <= value <= MAX_SEED:
    raise argparse.ArgumentTypeError(f"must be a whole number from 0 to {MAX_SEED}, got {text}")
  return value


def finite(text: str) -> float:
  """A finite number within float32's range."""
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
  if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
    raise argparse.ArgumentTypeError(f"must be a finite number within float32's range "
                                     f"(|x| <= {FLOAT32_MAX:.3g}), got {text}")
  return value


def positive(text: str) -> float:
  """A finite number above 0 (learning rates, radii)."""
  value = finite(text)
  if not value > 0:
    raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
  return value


def parse_targets(text: str, limit: int | None = None, what: str = "classes",
                  flag: str = "--targets", example: str = "0-9, 8 or 1,4,7") -> list:
  """`0-9`, `3`, `1,4,7` or `0-3,8` -> a list of ints in [0, limit).

  Every bound is checked against `limit` before a range is expanded, so `0-2000000000` costs
  nothing; without a limit the list may hold at most MAX_COUNT entries.

  Raises:
    JinvertError: unreadable text, a reversed range, or a target outside [0, limit).
  """
  parts = []
  for part in str(text).split(","):
    bounds = part.strip().split("-")
    try:
      if len(bounds) not in (1, 2):
        raise ValueError
      lo, hi = int(bounds[0]), int(bounds[-1])
      if hi < lo or lo < 0:
        raise ValueError
    except ValueError:
      raise JinvertError(f"{flag}: cannot read {part!r}; write e.g. {example}") from None
    if limit is not None and hi >= limit:
      raise JinvertError(f"{flag}: target {hi} is outside the model's {limit} {what} "
                         f"(valid: 0-{limit - 1})")
    parts.append((lo, hi))
  total = sum(hi - lo + 1 for lo, hi in parts)
  if total > MAX_COUNT:
    raise JinvertError(f"{flag}: {total:,} entries, more than {MAX_COUNT:,}")
  return [t for lo, hi in parts for t in range(lo, hi + 1)]


def numbers(text: str, flag: str) -> list:
  """`1,2.5,-3` -> finite floats; an unreadable or non-finite number names `flag`."""
  try:
    values = [float(v) for v in text.split(",")]
  except ValueError:
    raise JinvertError(f"{flag}: cannot read {text!r}; write comma-separated numbers") from None
  if not all(math.isfinite(v) for v in values):
    raise JinvertError(f"{flag}: every number must be finite, got {text!r}")
  return values


def max_change(text: str | None):
  """`l2:R` or `linf:R` -> ("l2" | "linf", R > 0), or None."""
  if text is None:
    return None
  kind, _, radius = text.partition(":")
  try:
    value = float(radius)
  except ValueError:
    value = float("nan")
  if kind not in ("l2", "linf") or not math.isfinite(value) or value <= 0:
    raise JinvertError(f"--max-change: write l2:RADIUS or linf:RADIUS with a radius above 0, got "
                       f"{text!r}")
  return kind, value


BATCHNORM_HELP = ("weight of the BatchNorm prior (DeepInversion's: the images' statistics at each "
                  "BatchNorm layer pulled to the model's running ones). Default: 1 with the "
                  "data-free preset on a model with BatchNorm layers, else off; 0 turns it off")


def batchnorm_weight(weight, clf, what: str):
  """--batchnorm-prior checked against the model: None (the preset decides), 0, or a positive
  weight for a model that has BatchNorm layers."""
  if weight is None:
    return None
  if weight < 0:
    raise JinvertError(f"--batchnorm-prior must be 0 or more, got {weight:g}")
  if weight > 0 and not clf.batchnorm:
    raise JinvertError(f"--batchnorm-prior: {what} has no BatchNorm layers (an exporter that "
                       "folds them into the convolutions leaves none)")
  return weight
