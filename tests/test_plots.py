"""Figures: every PNG decodes, at the size its layout asks for, the images where they belong."""

import io

import matplotlib.image
import numpy as np
import pytest

from jinvert import plots

RNG = np.random.default_rng(0)


def decoded(png: bytes) -> np.ndarray:
  assert png[:8] == b"\x89PNG\r\n\x1a\n"
  return matplotlib.image.imread(io.BytesIO(png), format="png")


def test_mosaic_puts_target_t_restart_r_in_row_t_column_r():
  images = RNG.random((3, 4, 5, 6)).astype(np.float32)
  grid = plots.mosaic(images, pad=1)
  assert grid.shape == (3 * 6 + 1, 4 * 7 + 1)
  for t in range(3):
    for r in range(4):
      np.testing.assert_array_equal(grid[1 + 6 * t:6 + 6 * t, 1 + 7 * r:7 + 7 * r], images[t, r])
  assert np.all(grid[0] == 1.0) and np.all(grid[:, 0] == 1.0)  # white padding


def test_mosaic_with_columns_lays_any_batch_out_in_rows():
  images = RNG.random((10, 4, 4)).astype(np.float32)
  grid = plots.mosaic(images, columns=4)  # 3 rows, the last with 2 blanks
  assert grid.shape == (3 * 5 + 1, 4 * 5 + 1)
  np.testing.assert_array_equal(grid[11:15, 6:10], images[9])
  np.testing.assert_array_equal(grid[11:15, 11:15], 0.0)


@pytest.mark.parametrize("images,columns", [((2, 3, 28, 28), None), ((2, 3, 28, 28, 3), None),
                                            ((100, 28, 28), 10), ((4, 2, 8, 8), 4)])
def test_grid_png_decodes_for_gray_colour_and_columns(images, columns):
  png = plots.grid_png(RNG.random(images), row_labels=None if columns else [3, 8],
                       title="a formula " * 12, columns=columns)
  height, width = decoded(png).shape[:2]
  assert height > 100 and width > 100


def test_displayable_turns_every_layout_into_height_width_and_rgb():
  chw = RNG.random((2, 3, 5, 7))
  np.testing.assert_array_equal(plots.displayable(chw, "chw"),
                                np.moveaxis(chw, 1, -1).astype(np.float32))
  assert plots.displayable(RNG.random((2, 5, 7, 1)), "hwc").shape == (2, 5, 7)
  assert plots.displayable(RNG.random((2, 5, 7, 2)), "hwc").shape == (2, 5, 7, 3)
  assert plots.displayable(RNG.random((2, 5, 7, 4)), "hwc").shape == (2, 5, 7, 3)


def test_the_other_figures_decode():
  assert decoded(plots.curve_png(np.linspace(0, 1, 20), "step", "x", reference=0.5,
                                 reference_label="closed form")).ndim == 3
  assert decoded(plots.features_png(RNG.random((2, 3, 6)), [0, 1], 0.0, np.ones(6))).ndim == 3
  assert decoded(plots.counterfactual_png(RNG.random((5, 5)), RNG.random((2, 1, 5, 5)),
                                          [1, 2], "counterfactual")).ndim == 3
  assert decoded(plots.bars_png(["a", "b"], {"x": [90.0, None], "y": [50.0, 60.0]}, "%",
                                references={"x": 95.0})).ndim == 3


def test_save_grid_writes_the_same_bytes_atomically(tmp_path):
  images = RNG.random((1, 2, 4, 4))
  path = plots.save_grid(tmp_path / "g.png", images)
  assert path.read_bytes() == plots.grid_png(images)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["g.png"]
