"""Figures as PNG: image grids, one row per target, and curves.

`grid_png` and `curve_png` return the PNG's bytes, for commands that stage their outputs
(`jinvert.files.Outputs`); `save_grid` and `save_curve` write them to a path atomically.
"""

import io
import math

import numpy as np

from jinvert.files import atomic_write_bytes


def _png(fig) -> bytes:
  import matplotlib.pyplot as plt
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=100)
  plt.close(fig)
  return buffer.getvalue()


def _pyplot():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def mosaic(images, pad: int = 1, columns: int | None = None) -> np.ndarray:
  """Tiles images (T, R, H, W) into one array, a row per target; with `columns`, images
  (N, H, W) or (T, R, H, W) flattened are laid out `columns` to a row instead."""
  images = np.asarray(images, np.float32)
  if columns is not None:
    flat = images.reshape((-1,) + images.shape[-2:])
    rows = math.ceil(len(flat) / columns)
    blank = np.zeros((rows * columns - len(flat),) + flat.shape[1:], np.float32)
    images = np.concatenate([flat, blank]).reshape((rows, columns) + flat.shape[1:])
  t, r, h, w = images.shape
  out = np.ones((t * (h + pad) + pad, r * (w + pad) + pad), np.float32)
  for i in range(t):
    for j in range(r):
      y, x = pad + i * (h + pad), pad + j * (w + pad)
      out[y:y + h, x:x + w] = images[i, j]
  return out


def grid_png(images, row_labels=None, title: str | None = None, columns: int | None = None,
             scale: float = 0.35) -> bytes:
  """A PNG grid of images in [0, 1] (black 0, white 1), a row per target.

  Args:
    images: (T, R, H, W).
    row_labels: optional label per row (e.g. the target class).
    title: optional figure title.
    columns: lay the images out this many to a row instead (e.g. 16 for 256 units).
    scale: inches per image.
  """
  plt = _pyplot()
  grid = mosaic(images, columns=columns)
  images = np.asarray(images)
  rows = grid.shape[0] / (images.shape[-2] + 1)
  cols = grid.shape[1] / (images.shape[-1] + 1)
  fig, ax = plt.subplots(figsize=(max(2.0, cols * scale + 0.6), max(1.5, rows * scale + 0.6)))
  ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
  ax.set_xticks([])
  if row_labels is not None and columns is None:
    h = images.shape[-2] + 1
    ax.set_yticks([1 + h * i + h / 2 for i in range(len(row_labels))], [str(l) for l in row_labels])
  else:
    ax.set_yticks([])
  if title:
    ax.set_title(title, fontsize=9)
  fig.tight_layout()
  return _png(fig)


def save_grid(path, *args, **kwargs):
  """Writes `grid_png(*args, **kwargs)` to `path` atomically."""
  return atomic_write_bytes(path, grid_png(*args, **kwargs))


def curve_png(values, xlabel: str, ylabel: str, title: str | None = None,
              reference: float | None = None, reference_label: str | None = None) -> bytes:
  """A PNG scatter of `values` against their index (seed 004's x0-per-iteration plot)."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(5, 3.2))
  ax.scatter(np.arange(len(values)), values, s=6)
  if reference is not None:
    ax.axhline(reference, color="tab:orange", lw=1, label=reference_label)
    ax.legend(loc="lower right", fontsize=8)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  if title:
    ax.set_title(title, fontsize=9)
  fig.tight_layout()
  return _png(fig)


def save_curve(path, *args, **kwargs):
  """Writes `curve_png(*args, **kwargs)` to `path` atomically."""
  return atomic_write_bytes(path, curve_png(*args, **kwargs))
