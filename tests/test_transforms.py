"""Transforms: what each does to an image, keyed, and that gradients pass through them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jinvert import transforms
from conftest import finite_difference_check

IMAGE = jax.random.uniform(jax.random.key(0), (9, 11))


@pytest.mark.parametrize("axes,shape", [((-2, -1), (9, 11)), ((-3, -2), (9, 11, 3))])
def test_jitter_is_a_roll_within_its_bound(axes, shape):
  image = jax.random.uniform(jax.random.key(1), shape)
  seen = set()
  for i in range(20):
    out = transforms.jitter(2, axes)(jax.random.key(i), image)
    shifts = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
              if np.array_equal(out, jnp.roll(image, (dy, dx), axis=axes))]
    assert shifts, "not a roll by at most 2 pixels"
    seen.add(shifts[0])
  assert len(seen) > 5  # the key decides the shift


def test_blur_is_the_gaussian_of_the_sigma_its_key_draws():
  key = jax.random.key(3)
  out = transforms.blur(1.5, radius=2)(key, IMAGE)
  sigma = jax.random.uniform(key, (), minval=0.1, maxval=1.5)
  k = jnp.exp(-0.5 * (jnp.arange(-2.0, 3.0) / sigma) ** 2)
  k = k / k.sum()
  want = jax.scipy.signal.convolve2d(IMAGE, jnp.outer(k, k), mode="same")
  np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)


def test_blur_keeps_a_flat_interior_and_the_mass_of_an_impulse():
  flat = transforms.blur(1.0)(jax.random.key(0), jnp.ones((9, 9)))
  np.testing.assert_allclose(flat[2:-2, 2:-2], 1.0, rtol=1e-6)
  impulse = jnp.zeros((9, 9)).at[4, 4].set(1.0)
  assert float(transforms.blur(1.0)(jax.random.key(0), impulse).sum()) == pytest.approx(1.0)


@pytest.mark.parametrize("make", [lambda: transforms.blur(1.0), lambda: transforms.jitter(1),
                                  lambda: transforms.compose([transforms.jitter(2),
                                                              transforms.blur(1.0)])])
def test_gradients_pass_through(make, x64):
  transform = make()
  weights = jax.random.normal(jax.random.key(5), IMAGE.shape, jnp.float64)
  finite_difference_check(lambda x: jnp.sum(weights * transform(jax.random.key(6), x)),
                          IMAGE.astype(jnp.float64), jax.random.key(7))


def test_compose_gives_each_transform_its_own_key():
  jitter, blur = transforms.jitter(2), transforms.blur(1.0)
  key = jax.random.key(9)
  composed = transforms.compose([jitter, blur])(key, IMAGE)
  want = blur(jax.random.fold_in(key, 1), jitter(jax.random.fold_in(key, 0), IMAGE))
  np.testing.assert_array_equal(composed, want)
  again = transforms.compose([jitter, blur])(key, IMAGE)
  other = transforms.compose([jitter, blur])(jax.random.key(10), IMAGE)
  np.testing.assert_array_equal(composed, again)
  assert not np.allclose(composed, other)


@pytest.mark.parametrize("axes,shape", [((-2, -1), (9, 11)), ((-2, -1), (3, 9, 11)),
                                        ((-3, -2), (9, 11, 3))])
def test_pad_then_crop_is_the_identity_and_pad_fills_the_border(axes, shape):
  image = jax.random.uniform(jax.random.key(1), shape)
  padded = transforms.pad(4, 0.25, axes)(None, image)
  grown = list(shape)
  for axis in axes:
    grown[axis] += 8
  assert padded.shape == tuple(grown)
  back = transforms.crop(shape[axes[0]], shape[axes[1]], axes)(None, padded)
  np.testing.assert_array_equal(back, image)
  border = jnp.moveaxis(padded, axes, (0, 1))
  assert float(jnp.abs(border[:4] - 0.25).max()) == 0.0
  assert float(jnp.abs(border[:, -4:] - 0.25).max()) == 0.0


def test_scale_and_rotate_by_nothing_are_the_identity():
  image = jax.random.uniform(jax.random.key(2), (3, 9, 11))
  np.testing.assert_allclose(transforms.random_scale(1.0, 1.0)(jax.random.key(0), image), image,
                             atol=1e-6)
  np.testing.assert_allclose(transforms.random_rotate(0.0)(jax.random.key(0), image), image,
                             atol=1e-6)


def test_rotate_turns_an_off_centre_dot_about_the_centre():
  # a dot 4 pixels right of the centre of a 21x21 image, rotated by the angle the key draws,
  # stays 4 pixels from the centre at that angle (to bilinear sampling's blur)
  dot = jnp.zeros((21, 21)).at[10, 14].set(1.0)
  ys, xs = jnp.meshgrid(jnp.arange(21.0), jnp.arange(21.0), indexing="ij")
  drawn = []
  for i in range(6):
    key = jax.random.key(i)
    out = transforms.random_rotate(40.0)(key, dot)
    theta = float(jnp.deg2rad(jax.random.uniform(key, (), minval=-40.0, maxval=40.0)))
    y, x = float(jnp.sum(out * ys) / out.sum()), float(jnp.sum(out * xs) / out.sum())
    assert abs(abs(np.arctan2(y - 10, x - 10)) - abs(theta)) < 0.05
    assert abs(np.hypot(y - 10, x - 10) - 4) < 0.2
    drawn.append(abs(theta))
  assert max(drawn) > 0.3  # the keys drew real rotations


def test_scale_moves_a_dot_away_from_the_centre_by_its_factor():
  # enlarging: bilinear sampling spreads the dot as a tent centred where it went
  dot = jnp.zeros((21, 21)).at[10, 14].set(1.0)
  xs = jnp.arange(21.0)[None, :]
  for i in range(4):
    key = jax.random.key(i)
    out = transforms.random_scale(1.2, 2.0)(key, dot)
    factor = float(jax.random.uniform(key, (), minval=1.2, maxval=2.0))
    assert float(jnp.sum(out * xs) / out.sum()) - 10 == pytest.approx(4 * factor, abs=0.05)


@pytest.mark.parametrize("axes,shape", [((-2, -1), (28, 28)), ((-2, -1), (3, 28, 28)),
                                        ((-3, -2), (28, 28, 3))])
def test_standard_keeps_the_shape_and_varies_with_its_key(axes, shape):
  image = jax.random.uniform(jax.random.key(1), shape)
  standard = transforms.standard(axes)
  a, b = standard(jax.random.key(0), image), standard(jax.random.key(1), image)
  assert a.shape == shape
  np.testing.assert_array_equal(a, standard(jax.random.key(0), image))
  assert not np.allclose(a, b)


@pytest.mark.parametrize("make", [lambda: transforms.pad(3, 0.5), lambda: transforms.crop(5, 7),
                                  lambda: transforms.random_scale(), lambda: transforms.random_rotate(),
                                  lambda: transforms.standard(),
                                  lambda: transforms.standard(pad_value=0.0),
                                  lambda: transforms.elastic()])
def test_new_transforms_pass_gradients(make, x64):
  transform = make()
  out_shape = transform(jax.random.key(6), IMAGE).shape
  weights = jax.random.normal(jax.random.key(5), out_shape, jnp.float64)
  finite_difference_check(lambda x: jnp.sum(weights * transform(jax.random.key(6), x)),
                          IMAGE.astype(jnp.float64), jax.random.key(7))


def test_elastic_by_nothing_is_the_identity():
  image = jax.random.uniform(jax.random.key(2), (3, 9, 11))
  still = transforms.elastic(alpha=0.0, degrees=0.0, scale=0.0)
  np.testing.assert_allclose(still(jax.random.key(0), image), image, atol=1e-6)


def test_elastic_moves_each_pixel_by_a_smooth_field_within_alpha():
  # bilinear sampling of a ramp is exact, so away from the border the output minus the ramp is
  # the field itself: bounded by alpha, varying slowly, other for another key
  rows = jnp.broadcast_to(jnp.arange(40.0)[:, None], (40, 40))
  bend = transforms.elastic(alpha=3.0, sigma=4.0, degrees=0.0, scale=0.0)
  fields = [np.asarray(bend(jax.random.key(i), rows) - rows)[8:-8, 8:-8] for i in range(2)]
  for field in fields:
    assert np.abs(field).max() <= 3.0
    assert np.abs(field).max() > 0.1                              # it moved
    assert np.abs(np.diff(field, axis=0)).max() < 0.5 * np.abs(field).max()  # smoothly
  assert not np.allclose(*fields)


def test_elastic_moves_every_channel_alike():
  image = jax.random.uniform(jax.random.key(1), (12, 12, 3))
  out = transforms.elastic(axes=(-3, -2))(jax.random.key(4), image)
  for c in range(3):
    np.testing.assert_allclose(out[..., c], transforms.elastic()(jax.random.key(4), image[..., c]),
                               atol=1e-6)


@pytest.mark.parametrize("axes,shape", [((-2, -1), (9, 11)), ((-3, -2), (9, 11, 2))])
def test_resampling_reads_what_map_coordinates_reads_and_passes_its_gradient(axes, shape):
  """At places inside the image, on its border and beyond it (where the edge repeats), every
  channel's values and their gradient equal scipy's bilinear `map_coordinates` with
  mode="nearest"."""
  image = jax.random.uniform(jax.random.key(3), shape)
  h, w = (shape[a] for a in axes)
  # a displacement to past every border by up to 4 pixels, and one onto the last pixels exactly
  moved = jax.random.uniform(jax.random.key(8), (2, h, w), minval=-4.0, maxval=4.0)
  moved = moved.at[:, -1, -1].set(0.0).at[0, 0, :].set(-1.0)

  def by_scipy(x):
    planes = jnp.moveaxis(x, axes, (0, 1))
    rows, cols = jnp.meshgrid(jnp.arange(h, dtype=x.dtype), jnp.arange(w, dtype=x.dtype),
                              indexing="ij")
    read = [jax.scipy.ndimage.map_coordinates(plane, [rows + moved[0], cols + moved[1]],
                                              order=1, mode="nearest")
            for plane in jnp.moveaxis(planes.reshape(h, w, -1), -1, 0)]
    return jnp.moveaxis(jnp.stack(read, -1).reshape(planes.shape), (0, 1), axes)

  ours = lambda x: transforms._resample(x, jnp.eye(2), axes, moved)
  np.testing.assert_allclose(ours(image), by_scipy(image), atol=1e-6)
  weights = jax.random.normal(jax.random.key(9), shape)
  np.testing.assert_allclose(jax.grad(lambda x: jnp.sum(weights * ours(x)))(image),
                             jax.grad(lambda x: jnp.sum(weights * by_scipy(x)))(image), atol=1e-5)
