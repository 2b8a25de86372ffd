"""Parameterisations: constraints hold at every step, reparameterised boxes hold, gradients."""

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jinvert import objectives as ob
from jinvert import parameterizations as pz
from jinvert.engine import invert
from jinvert.errors import JinvertError
from conftest import finite_difference_check, tiny_model

SHAPE = (5, 5)


def _run(apply_fn, params, objective, targets, **kw):
  kw.setdefault("steps", 20)
  return invert(apply_fn, params, objective, targets, key=kw.pop("key", jax.random.key(0)),
                input_shape=SHAPE, **kw)


def test_m_matrix_iterates_equal_direct_input_optimisation():
  apply_fn, params = tiny_model(jax.random.key(0))
  opt = optax.chain(optax.normalize_by_update_norm(), optax.sgd(0.3))
  for steps in (1, 2, 5, 15):
    direct = _run(apply_fn, params, ob.class_logit(), jnp.arange(4), steps=steps, restarts=2,
                  optimizer=opt, parameterization=pz.pixels())
    m = _run(apply_fn, params, ob.class_logit(), jnp.arange(4), steps=steps, restarts=2,
             optimizer=opt, parameterization=pz.identity_times_m())
    np.testing.assert_array_equal(direct.inputs, m.inputs)
    np.testing.assert_array_equal(direct.loss_history, m.loss_history)


@pytest.mark.parametrize("make", [
    lambda c: pz.pixels(),
    lambda c: pz.l2_ball(c, 0.8),
    lambda c: pz.linf_ball(c, 0.1),
])
def test_box_and_ball_constraints_hold_at_every_step(make):
  apply_fn, params = tiny_model(jax.random.key(0))
  center = jax.random.uniform(jax.random.key(3), SHAPE)
  param = make(center)
  for steps in range(1, 9):
    x = _run(apply_fn, params, ob.class_logit(), jnp.arange(4), steps=steps, restarts=2,
             optimizer=optax.sgd(5.0), parameterization=param).inputs
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    d = (x - center[None, None]).reshape(4, 2, -1)
    if "l2_ball" in param.name:
      assert float(jnp.linalg.norm(d, axis=-1).max()) <= 0.8 + 1e-5
    if "linf_ball" in param.name:
      assert float(jnp.abs(d).max()) <= 0.1 + 1e-6
  assert float(jnp.abs(x - center[None, None]).max()) > 0.05  # the constraint was active


def test_fourier_and_sigmoid_stay_in_unit_box_and_raise_the_objective():
  apply_fn, params = tiny_model(jax.random.key(0))
  for param in (pz.fourier(SHAPE), pz.sigmoid()):
    r = _run(apply_fn, params, ob.class_log_prob(), jnp.arange(4), restarts=2, steps=60,
             parameterization=param)
    assert float(r.inputs.min()) >= 0.0 and float(r.inputs.max()) <= 1.0
    assert bool(jnp.all(r.loss_history[-1] < r.loss_history[0]))


@pytest.mark.parametrize("make", [lambda: pz.sigmoid(0.5, -2.0), lambda: pz.fourier(SHAPE),
                                  lambda: pz.pyramid(SHAPE), lambda: pz.strokes(SHAPE),
                                  lambda: pz.strokes(SHAPE, box=20.0),
                                  lambda: pz.capsules(SHAPE, radius=1.0, box=4.0),
                                  lambda: pz.capsules(SHAPE, radius=1.0, mirror=None)])
def test_to_input_gradient_matches_finite_differences(make, x64):
  param = make()
  latent, unravel = ravel_pytree(jax.tree.map(lambda z: z.astype(jnp.float64),
                                              param.init(jax.random.key(2), SHAPE)))
  weights = jax.random.normal(jax.random.key(3), SHAPE, jnp.float64)
  finite_difference_check(lambda z: jnp.sum(weights * param.to_input(unravel(z))), latent,
                          jax.random.key(4), rtol=1e-5)


def test_sigmoid_mean_starts_dark():
  x = pz.sigmoid(scale=0.5, mean=-2.0)
  starts = jax.vmap(lambda k: x.to_input(x.init(k, SHAPE)))(jax.random.split(jax.random.key(0), 64))
  assert 0.1 < float(starts.mean()) < 0.15  # sigmoid(-2) = 0.12


def test_decoder_optimises_the_latent_of_any_decode_function():
  decode = lambda z: jax.nn.sigmoid(jnp.outer(z, z))[:5, :5]
  param = pz.decoder(decode, latent_dim=5)
  z = param.init(jax.random.key(0), SHAPE)
  assert z.shape == (5,) and param.to_input(z).shape == SHAPE


@pytest.mark.parametrize("make,message", [
    (lambda: pz.l2_ball(np.full(SHAPE, np.nan), 1.0), "ball center contains NaN"),
    (lambda: pz.linf_ball(np.zeros(SHAPE), 0.0), "ball radius must be positive"),
    (lambda: pz.fourier((4, 4)).init(jax.random.key(0), (5, 5)), r"built for \(4, 4\)"),
    (lambda: pz.pyramid((4, 4)).init(jax.random.key(0), (5, 5)), r"built for \(4, 4\)"),
    (lambda: pz.pyramid((3, 8, 8)), "one-channel images"),
    (lambda: pz.strokes((4, 4)).init(jax.random.key(0), (5, 5)), r"built for \(4, 4\)"),
    (lambda: pz.strokes((8, 8, 3)), "the strokes parameterisation draws one-channel images"),
    (lambda: pz.strokes((28, 28), box=3.0), "a box of 3 pixels of 28 is no wider than the "
                                             r"pen's ink, 3\.06 pixels"),
    (lambda: pz.strokes((28, 28), box=float("nan")), "a box of nan pixels"),
    (lambda: pz.capsules((4, 4)).init(jax.random.key(0), (5, 5)), r"built for \(4, 4\)"),
    (lambda: pz.capsules((3, 8, 8)), "the capsules parameterisation draws one-channel images"),
    (lambda: pz.capsules((28, 28), box=0.0), "capsules: a box must be above 0 pixels of 28, got 0"),
    (lambda: pz.capsules((28, 28), box=float("nan")), "got nan"),
])
def test_bad_parameterisations_are_named(make, message):
  with pytest.raises(JinvertError, match=message):
    make()


@pytest.mark.parametrize("shape", [(6, 8), (6, 8, 3), (3, 6, 8), (6, 8, 1)])
def test_fourier_draws_every_channel_in_the_models_layout(shape):
  param = pz.fourier(shape)
  latent = param.init(jax.random.key(0), shape)
  x = param.to_input(latent)
  assert x.shape == shape and float(x.min()) >= 0 and float(x.max()) <= 1
  channels = 1 if len(shape) == 2 else min(shape[0], shape[-1])
  assert latent.shape == (channels, 2, 6, 5)


def test_decorrelated_colour_mixes_the_channels_with_the_fixed_matrix():
  """A latent in one channel only moves all three colours when decorrelated, in the proportions
  of the colour-correlation matrix's column; without, only its own."""
  shape = (6, 8, 3)
  latent = jnp.zeros((3, 2, 6, 5)).at[0, 0, 0, 0].set(4.0)  # the DC term of channel 0
  plain = pz.fourier(shape).to_input(latent) - 0.5
  mixed = pz.fourier(shape, decorrelate=True).to_input(latent) - 0.5
  assert float(jnp.abs(plain[..., 1:]).max()) == 0.0 and float(plain[..., 0].min()) > 0
  logit = jnp.log((mixed + 0.5) / (0.5 - mixed))[0, 0]  # undo the sigmoid
  column = pz.COLOR_CORRELATION_SVD_SQRT[:, 0]
  np.testing.assert_allclose(logit / logit[0], column / column[0], rtol=1e-4)


def test_fourier_mean_starts_dark_and_decorrelation_needs_three_channels():
  x = pz.fourier((6, 8, 3), decorrelate=True, mean=-2.0)
  start = x.to_input(x.init(jax.random.key(0), (6, 8, 3)))
  assert 0.1 < float(start.mean()) < 0.14  # sigmoid(-2) = 0.12
  with pytest.raises(JinvertError, match=r"decorrelated colour needs 3 channels; inputs of "
                                         r"\(6, 8, 1\) have 1"):
    pz.fourier((6, 8, 1), decorrelate=True)
  with pytest.raises(JinvertError, match="needs an image, not 20 features"):
    pz.fourier((20,))


@pytest.mark.parametrize("shape,decorrelate", [((6, 8, 3), True), ((3, 6, 8), False)])
def test_colour_fourier_gradient_matches_finite_differences(shape, decorrelate, x64):
  param = pz.fourier(shape, decorrelate=decorrelate, mean=-1.0)
  latent = param.init(jax.random.key(2), shape).astype(jnp.float64)
  weights = jax.random.normal(jax.random.key(3), shape, jnp.float64)
  finite_difference_check(lambda z: jnp.sum(weights * param.to_input(z)), latent,
                          jax.random.key(4), rtol=1e-5)


def test_a_pyramids_coarse_level_moves_whole_regions():
  """A step on the coarsest level changes a block of pixels together; on the finest, one
  pixel; a constant latent is a flat image at sigmoid(mean + levels x constant)."""
  param = pz.pyramid((1, 28, 28))
  latent = [jnp.zeros_like(z) for z in param.init(jax.random.key(0), (1, 28, 28))]
  flat = param.to_input([z + 0.5 for z in latent])
  np.testing.assert_allclose(flat, jax.nn.sigmoid(-2.0 + 3 * 0.5), rtol=1e-6)
  base = param.to_input(latent)
  fine = param.to_input([latent[0].at[10, 10].set(1.0)] + latent[1:]) - base
  coarse = param.to_input(latent[:2] + [latent[2].at[3, 3].set(1.0)]) - base
  assert int((jnp.abs(fine) > 1e-6).sum()) == 1
  assert int((jnp.abs(coarse) > 1e-6).sum()) >= 25  # a 7x7 cell spans 4x4 pixels and their edges


@pytest.mark.parametrize("shape", [(4, 28, 28), (3, 5, 7)])
def test_computed_once_is_the_value_to_the_last_bit(shape):
  """The strokes' nearest place goes through a product with the identity (so that XLA works it
  out once): any rounding there, as at a matmul's reduced default precision, would move it."""
  x = jax.random.uniform(jax.random.key(0), shape, minval=-7.0, maxval=7.0)
  x = x.at[0, 0, 0].set(6.999999523162842).at[-1, -1, -1].set(1e-30)
  np.testing.assert_array_equal(np.asarray(jax.jit(pz._computed_once)(x)), np.asarray(x))


def _casteljau(control, t):
  """A Bezier curve's point at t by repeated interpolation (not the Bernstein sum)."""
  while len(control) > 1:
    control = [(1 - t) * a + t * b for a, b in zip(control[:-1], control[1:])]
  return control[0]


@pytest.mark.parametrize("shape", [(28, 28), (1, 20, 24)])
def test_strokes_ink_falls_with_the_distance_to_the_nearest_piece_of_each_curve(shape):
  """Every pixel against a direct computation: each curve's pieces between de Casteljau points,
  the distance from the pixel to the nearest, ink exp(-d^2 / 2 sigma^2) x intensity, strokes
  combined as 1 - prod(1 - ink)."""
  param = pz.strokes(shape, count=3, points=4, segments=5, width=1.3, box=None)
  latent = param.init(jax.random.key(1), shape)
  latent["intensity"] = jnp.array([3.0, 0.0, -1.0])
  h, w = shape[-2:]
  centre, spread, sigma = np.array([h / 2, w / 2]), min(h, w) / 7, 1.3 * min(h, w) / 28
  blank = np.ones((h, w))
  for control, intensity in zip(np.asarray(latent["control"], np.float64),
                                np.asarray(latent["intensity"], np.float64)):
    control = list(centre + spread * control)
    curve = [_casteljau(control, t) for t in np.linspace(0, 1, 6)]
    for y in range(h):
      for x in range(w):
        p, nearest = np.array([y, x], float), np.inf
        for a, b in zip(curve[:-1], curve[1:]):
          u = np.clip(np.dot(p - a, b - a) / np.dot(b - a, b - a), 0, 1)
          nearest = min(nearest, np.sum((p - a - u * (b - a)) ** 2))
        blank[y, x] *= 1 - np.exp(-nearest / (2 * sigma ** 2)) / (1 + np.exp(-intensity))
  image = param.to_input(latent)
  assert image.shape == shape
  # float32 rounding of d^2 (up to h^2 + w^2; the bound of an earlier renderer, which summed
  # |p|^2 - 2 p.a + |a|^2), times the ink's slope in d^2, at most 1 / (2 sigma^2)
  atol = 8 * np.finfo(np.float32).eps * (h * h + w * w) / (2 * sigma ** 2)
  np.testing.assert_allclose(np.asarray(image).reshape(h, w), 1 - blank, atol=atol)
  assert float(image.max()) > 0.9  # a stroke at intensity sigmoid(3) = 0.95 crosses the image


@pytest.mark.parametrize("shape", [(28, 28), (1, 20, 24)])
def test_strokes_are_framed_as_mnist_frames_a_digit(shape):
  """The framed drawing is the unframed drawing of control points moved and scaled so that the
  path (de Casteljau's points) has its mean at the centre and its longer side `box` less the
  ink's reach either side (ink > 1/2 within sqrt(2 ln 2) widths), whatever the latent's own
  place and size."""
  framed = pz.strokes(shape, count=3, points=4, segments=5, box=20.0)
  unframed = pz.strokes(shape, count=3, points=4, segments=5, box=None)
  h, w = shape[-2:]
  centre, spread, sigma = np.array([h / 2, w / 2]), min(h, w) / 7, 1.3 * min(h, w) / 28
  extent = 20.0 * min(h, w) / 28 - 2 * sigma * np.sqrt(2 * np.log(2))
  latent = framed.init(jax.random.key(5), shape)
  control = centre + spread * np.asarray(latent["control"], np.float64)
  path = np.array([_casteljau(list(c), t) for c in control for t in np.linspace(0, 1, 6)])
  longer = np.max(path.max(0) - path.min(0))
  moved = (control - path.mean(0)) * (extent / longer) + centre
  by_hand = unframed.to_input({**latent, "control": jnp.asarray((moved - centre) / spread,
                                                                 jnp.float32)})
  elsewhere = {**latent, "control": 0.4 * latent["control"] + jnp.array([[[1.5, -2.0]]])}
  atol = 8 * np.finfo(np.float32).eps * (h * h + w * w) / (2 * sigma ** 2)  # as the test above
  for image in (framed.to_input(latent), framed.to_input(elsewhere)):
    np.testing.assert_allclose(np.asarray(image), np.asarray(by_hand), atol=atol)
  assert not np.allclose(np.asarray(unframed.to_input(latent)), np.asarray(by_hand), atol=0.1)


def _capsules_by_hand(latent, h, w, segments, shade):
  """Each capsule's pieces between de Casteljau points of its path, its radius along a piece
  the straight line between de Casteljau points of its radius curve, a pixel filled
  sigmoid((radius - distance) / (0.5 px of 28)), capsules joined as 1 - prod(1 - fill)."""
  unit = min(h, w) / 28
  centre, spread = np.array([h / 2, w / 2]), min(h, w) / 7
  blank = np.ones((h, w))
  radii = np.log1p(np.exp(np.asarray(latent["radius"], np.float64))) * unit
  for control, radius in zip(np.asarray(latent["control"], np.float64), radii):
    ts = np.linspace(0, 1, segments + 1)
    path = [_casteljau(list(centre + spread * control), t) for t in ts]
    across = [_casteljau(list(radius), t) for t in ts]
    for y in range(h):
      for x in range(w):
        p, outside = np.array([y, x], float), np.inf
        for a, b, ra, rb in zip(path[:-1], path[1:], across[:-1], across[1:]):
          u = np.clip(np.dot(p - a, b - a) / np.dot(b - a, b - a), 0, 1)
          outside = min(outside, np.linalg.norm(p - a - u * (b - a)) - (ra + u * (rb - ra)))
        blank[y, x] *= 1 - 1 / (1 + np.exp(outside / (0.5 * unit)))
  return (1 - blank) * shade


@pytest.mark.parametrize("shape", [(28, 28), (1, 20, 24)])
def test_capsules_fill_what_lies_within_the_radius_of_each_path(shape):
  param = pz.capsules(shape, count=3, points=4, segments=5, mirror=None)
  latent = param.init(jax.random.key(1), shape)
  latent["radius"] = latent["radius"] + jax.random.normal(jax.random.key(2), (3, 4))
  latent["shade"] = jnp.full_like(latent["shade"], 2.0)  # a constant stays one under resizing
  h, w = shape[-2:]
  image = param.to_input(latent)
  assert image.shape == shape
  by_hand = _capsules_by_hand(latent, h, w, 5, 1 / (1 + np.exp(-2.0)))
  # the renderer's distance is sqrt(d^2 + 1e-6): up to 5e-4 px more, at a slope of at most
  # 1 / (4 x 0.5 px) in the fill
  np.testing.assert_allclose(np.asarray(image).reshape(h, w), by_hand, atol=5e-4)
  assert float(image.max()) > 0.8 and float(image.min()) < 0.01  # filled, and not everywhere


def test_capsules_join_their_mirror_image_by_the_learned_weight():
  """x becomes 1 - (1 - x)(1 - sigmoid(g) x flipped left to right): left and right the same once
  the weight is 1, the capsules alone once it is 0."""
  shape = (1, 20, 24)
  mirrored, alone = pz.capsules(shape, box=20.0), pz.capsules(shape, box=20.0, mirror=None)
  latent = mirrored.init(jax.random.key(3), shape)
  assert float(latent["mirror"]) == 2.0
  x = np.asarray(alone.to_input({k: v for k, v in latent.items() if k != "mirror"}))
  weight = 1 / (1 + np.exp(-2.0))
  np.testing.assert_allclose(np.asarray(mirrored.to_input(latent)),
                             1 - (1 - x) * (1 - weight * x[..., ::-1]), atol=1e-6)
  on = np.asarray(mirrored.to_input(latent | {"mirror": jnp.array(40.0)}))
  off = np.asarray(mirrored.to_input(latent | {"mirror": jnp.array(-40.0)}))
  np.testing.assert_array_equal(on, on[..., ::-1])
  np.testing.assert_allclose(off, x, atol=1e-6)
  assert np.abs(x - x[..., ::-1]).max() > 0.5  # the capsules alone are not symmetric


@pytest.mark.parametrize("shape", [(28, 28), (1, 20, 24)])
def test_capsules_are_framed_as_fashion_mnist_frames_a_product(shape):
  """The framed drawing is the unframed drawing of the capsules moved and scaled so that their
  bounding box (each path's points, out by their radii) has its longer side `box` pixels of
  28 and its middle at the centre, whatever the latent's own place."""
  framed = pz.capsules(shape, segments=5, box=26.0, mirror=None)
  unframed = pz.capsules(shape, segments=5, mirror=None)
  h, w = shape[-2:]
  unit, centre, spread = min(h, w) / 28, np.array([h / 2, w / 2]), min(h, w) / 7
  latent = framed.init(jax.random.key(5), shape)
  control = centre + spread * np.asarray(latent["control"], np.float64)
  radius = np.log1p(np.exp(np.asarray(latent["radius"], np.float64))) * unit
  ts = np.linspace(0, 1, 6)
  path = np.array([[_casteljau(list(c), t) for t in ts] for c in control])
  across = np.array([[_casteljau(list(r), t) for t in ts] for r in radius])[..., None]
  low, high = (path - across).min((0, 1)), (path + across).max((0, 1))
  scale = 26.0 * unit / np.max(high - low)
  moved = (control - (low + high) / 2) * scale + centre
  by_hand = unframed.to_input(latent | {
      "control": jnp.asarray((moved - centre) / spread, jnp.float32),
      "radius": jnp.asarray(np.log(np.expm1(radius * scale / unit)), jnp.float32)})
  elsewhere = latent | {"control": latent["control"] + jnp.array([[[1.5, -2.0]]])}
  for image in (framed.to_input(latent), framed.to_input(elsewhere)):
    np.testing.assert_allclose(np.asarray(image), np.asarray(by_hand), atol=1e-4)
  assert not np.allclose(np.asarray(unframed.to_input(latent)), np.asarray(by_hand), atol=0.1)
  ink = np.argwhere(np.asarray(framed.to_input(latent)).reshape(h, w) > 0.25)
  assert 24 * unit <= np.max(ink.max(0) - ink.min(0)) + 1 <= 27 * unit
