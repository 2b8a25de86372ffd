"""Figures as PNG: image grids, one row per target, and curves.

`grid_png` and `curve_png` return the PNG's bytes, for commands that stage their outputs
(`jinvert.files.Outputs`); `save_grid` and `save_curve` write them to a path atomically.

>>> import numpy as np
>>> images = np.random.default_rng(0).random((2, 3, 28, 28))   # 2 targets x 3 restarts
>>> mosaic(images).shape                                      # a pixel of padding around each
(59, 88)
>>> grid_png(images, row_labels=[3, 8], title="two digits")[:4]
b'\x89PNG'
"""

import io
import math
import textwrap

import numpy as np

from jinvert.files import atomic_write_bytes


def _png(fig) -> bytes:
  import matplotlib.pyplot as plt
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=100, pil_kwargs={"optimize": True})
  plt.close(fig)
  return buffer.getvalue()


def _finished(fig, ax, title: str | None) -> bytes:
  """The figure's PNG, with its title (if any) over `ax` (over the figure when `ax` is None)."""
  if title:
    _title(fig, ax, title)
  fig.tight_layout()
  return _png(fig)


def _title(fig, ax, title: str, fontsize: float = 9):
  """The title of `ax` (of the figure when `ax` is None), wrapped to the figure's width: a
  formula can be longer than a narrow grid is wide."""
  text = textwrap.fill(title, max(20, int(fig.get_figwidth() * 72 / (0.6 * fontsize))))
  if ax is None:
    fig.suptitle(text, fontsize=fontsize)
  else:
    ax.set_title(text, fontsize=fontsize)


def _pyplot():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def displayable(images, kind: str):
  """Images (..., *input_shape) of a layout kind (`gray`, `chw`, `hwc`) as (..., H, W) or
  (..., H, W, 3) for display; one channel shows as gray, 2 or 4 channels as their first 3."""
  images = np.asarray(images, np.float32)
  if kind == "chw":
    images = np.moveaxis(images, -3, -1)
  if kind in ("chw", "hwc"):
    channels = images.shape[-1]
    if channels == 1:
      return images[..., 0]
    if channels == 2:
      images = np.concatenate([images, np.zeros_like(images[..., :1])], -1)
    return images[..., :3]
  return images


def _planes(images):
  """(the shape of one image, (3,) for colour or () for gray) of (..., H, W) or (..., H, W, 3)."""
  colour = images.shape[-1:] if images.ndim in (3, 5) and images.shape[-1] == 3 else ()
  return images.shape[images.ndim - len(colour) - 2:], colour


def mosaic(images, pad: int = 1, columns: int | None = None) -> np.ndarray:
  """Tiles images (T, R, H, W) or colour (T, R, H, W, 3) into one array, a row per target;
  with `columns`, the images (any leading axes) are laid out `columns` to a row instead."""
  images = np.asarray(images, np.float32)
  plane, colour = _planes(images)
  if columns is not None:
    flat = images.reshape((-1,) + plane)
    rows = math.ceil(len(flat) / columns)
    blank = np.zeros((rows * columns - len(flat),) + plane, np.float32)
    images = np.concatenate([flat, blank]).reshape((rows, columns) + plane)
  t, r, h, w = images.shape[:4]
  out = np.ones((t * (h + pad) + pad, r * (w + pad) + pad) + colour, np.float32)
  for i in range(t):
    for j in range(r):
      y, x = pad + i * (h + pad), pad + j * (w + pad)
      out[y:y + h, x:x + w] = images[i, j]
  return out


def grid_png(images, row_labels=None, title: str | None = None, columns: int | None = None,
             scale: float = 0.35) -> bytes:
  """A PNG grid of images in [0, 1] (black 0, white 1), a row per target.

  Args:
    images: (T, R, H, W), or colour (T, R, H, W, 3) (see `displayable`); with `columns`, any
      leading axes, (N, H, W) say.
    row_labels: optional label per row (e.g. the target class).
    title: optional figure title.
    columns: lay the images out this many to a row instead (e.g. 16 for 256 units).
    scale: inches per image.
  """
  plt = _pyplot()
  grid = mosaic(images, columns=columns)
  h, w = _planes(np.asarray(images))[0][:2]
  rows, cols = grid.shape[0] / (h + 1), grid.shape[1] / (w + 1)
  fig, ax = plt.subplots(figsize=(max(2.0, cols * scale + 0.6), max(1.5, rows * scale + 0.6)))
  ax.imshow(np.clip(grid, 0.0, 1.0), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
  ax.set_xticks([])
  if row_labels is not None and columns is None:
    ax.set_yticks([1 + (h + 1) * (i + 0.5) for i in range(len(row_labels))],
                  [str(l) for l in row_labels])
  else:
    ax.set_yticks([])
  return _finished(fig, ax, title)


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
  return _finished(fig, ax, title)


def save_curve(path, *args, **kwargs):
  """Writes `curve_png(*args, **kwargs)` to `path` atomically."""
  return atomic_write_bytes(path, curve_png(*args, **kwargs))


def bars_png(categories, series: dict, ylabel: str, title: str | None = None,
              references: dict | None = None, ylim=None) -> bytes:
  """A PNG of grouped bars: one group per category, one bar per series (`{name: values}`, a
  value per category, None for none), each bar labelled with its value; `references`
  (`{name: value}`) draws a dashed line per series, in its colour (a teacher's accuracy, say)."""
  plt = _pyplot()
  n = len(series)
  width = 0.8 / n
  fig, ax = plt.subplots(figsize=(1.1 * len(categories) + 1.5, 3.2))
  for i, (name, values) in enumerate(series.items()):
    x = np.arange(len(categories)) + (i - (n - 1) / 2) * width
    shown = [np.nan if v is None else v for v in values]
    bars = ax.bar(x, shown, width, label=name, color=f"C{i}")
    ax.bar_label(bars, [("" if v is None else f"{v:.1f}") for v in values], fontsize=7)
    if references and name in references:
      ax.axhline(references[name], color=f"C{i}", lw=0.8, ls="--")
  ax.set_xticks(np.arange(len(categories)), categories, fontsize=8)
  ax.set_ylabel(ylabel)
  if ylim is not None:
    ax.set_ylim(*ylim)
  ax.legend(fontsize=8, loc="upper left")
  return _finished(fig, ax, title)


def features_png(vectors, row_labels, low, high, title: str | None = None) -> bytes:
  """A PNG of feature vectors (T, R, F): a panel per target, each restart's features as a
  line over the feature index, within the box [low, high] (scalars or (F,) arrays) shaded."""
  plt = _pyplot()
  vectors = np.asarray(vectors, np.float32)
  t, r, f = vectors.shape
  index = np.arange(f)
  fig, axes = plt.subplots(t, 1, figsize=(max(4.0, 0.25 * f + 1.5), 1.3 * t + 0.6),
                           sharex=True, squeeze=False)
  for i, ax in enumerate(axes[:, 0]):
    ax.fill_between(index, np.broadcast_to(low, (f,)), np.broadcast_to(high, (f,)),
                    color="0.92", step="mid")
    ax.plot(index, vectors[i].T, marker=".", lw=0.6, ms=3, alpha=0.7)
    ax.set_ylabel(str(row_labels[i]), rotation=0, ha="right", va="center")
  axes[-1, 0].set_xlabel("feature")
  return _finished(fig, None, title)


def counterfactual_png(start, results, row_labels, title: str | None = None) -> bytes:
  """A PNG of counterfactuals: a row per target, the start, the result (the first restart),
  and their difference (red: brighter, blue: darker).

  Args:
    start: one displayable image (H, W) or (H, W, 3) in [0, 1].
    results: (T, R, ...) displayable images.
    row_labels: the targets.
  """
  plt = _pyplot()
  start, results = np.asarray(start, np.float32), np.asarray(results, np.float32)
  t = len(results)
  fig, axes = plt.subplots(t, 3, figsize=(3.6, 1.2 * t + 0.6), squeeze=False)
  for i in range(t):
    after = results[i, 0]
    change = after - start
    change = change.mean(-1) if change.ndim == 3 else change
    limit = max(float(np.abs(change).max()), 1e-6)
    for ax, image, kw in ((axes[i, 0], start, {"cmap": "gray", "vmin": 0, "vmax": 1}),
                          (axes[i, 1], after, {"cmap": "gray", "vmin": 0, "vmax": 1}),
                          (axes[i, 2], change, {"cmap": "seismic", "vmin": -limit, "vmax": limit})):
      ax.imshow(np.clip(image, 0, 1) if image is not change else image, interpolation="nearest",
                **kw)
      ax.set_xticks([])
      ax.set_yticks([])
    axes[i, 0].set_ylabel(str(row_labels[i]), rotation=0, ha="right", va="center")
  for ax, name in zip(axes[0], ("start", "after", "change")):
    ax.set_title(name, fontsize=8)
  return _finished(fig, None, title)
