"""Input parameterisations: what the optimiser moves, how it becomes an input, what keeps it valid.

A Parameterization is three pure functions:
  init(key, input_shape) -> latent      the starting point of one restart
  to_input(latent) -> x                 the input the model sees
  project(latent) -> latent             applied after every optimiser step (a constraint)

Box and ball constraints use `optax.projections` and hold exactly after every step.

>>> import jax, jax.numpy as jnp
>>> box = pixels()                        # the box [0, 1], by projection
>>> latent = box.init(jax.random.key(0), (2, 2))
>>> box.project(latent + 5.0).tolist()    # a step out of the box lands on its face
[[1.0, 1.0], [1.0, 1.0]]
>>> ball = l2_ball(jnp.zeros((2, 2)), radius=0.5)
>>> float(jnp.linalg.norm(ball.project(jnp.ones((2, 2)))))
0.5
"""

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jinvert.errors import JinvertError


class Parameterization(NamedTuple):
  init: Callable
  to_input: Callable
  project: Callable
  name: str


def _identity(z):
  return z


def _uniform(low, high):
  return lambda key, shape: jax.random.uniform(key, shape, minval=low, maxval=high)


def pixels(low: float = 0.0, high: float = 1.0, init_low: float = 0.0, init_high: float = 1.0,
           constrain: bool = True) -> Parameterization:
  """Optimise the pixels themselves, starting U(init_low, init_high), projected onto the box
  [low, high] after every step when `constrain` (seed 003's "constraints on the input")."""
  project = (lambda z: optax.projections.projection_box(z, low, high)) if constrain else _identity
  return Parameterization(_uniform(init_low, init_high), _identity, project,
                          f"pixels[{low:g},{high:g}]" if constrain else "pixels(free)")


def start_at(value, low: float | None = None, high: float | None = None) -> Parameterization:
  """Every restart starting at `value` (seed 004 starts at x0 = 1); free, or kept in the box
  [low, high] by `optax.projections` after each step."""
  value = jnp.asarray(value, jnp.float32)
  project = _identity if low is None else (
      lambda z: optax.projections.projection_box(z, low, high))
  return Parameterization(lambda key, shape: jnp.broadcast_to(value, shape), _identity, project,
                          "start_at" if low is None else f"start_at[{low:g},{high:g}]")


def sigmoid(scale: float = 1.0, mean: float = 0.0) -> Parameterization:
  """x = sigmoid(latent): the box [0, 1] by reparameterisation; latent starts N(mean, scale^2)
  (a negative mean starts from dark images)."""
  def init(key, shape):
    return mean + scale * jax.random.normal(key, shape)
  return Parameterization(init, jax.nn.sigmoid, _identity,
                          "sigmoid" if mean == 0 else f"sigmoid(mean={mean:g})")


def _check_center(center, radius):
  center = jnp.asarray(center, jnp.float32)
  # a traced center (one per example under vmap, say) is checked by whoever made it
  if not isinstance(center, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(center))):
    raise JinvertError("ball center contains NaN or inf")
  if not radius > 0:
    raise JinvertError(f"ball radius must be positive, got {radius}")
  return center


def l2_ball(center, radius: float, low: float = 0.0, high: float = 1.0) -> Parameterization:
  """Pixels within L2 distance `radius` of `center` and inside the box [low, high].

  Projects onto the ball, then the box; for a center inside the box the box projection never
  moves a point away from the center, so both constraints hold after every step.
  Starts at the center: the search for the closest input the model maps to the target.
  """
  center = _check_center(center, radius)

  def project(z):
    z = center + optax.projections.projection_l2_ball(z - center, radius)
    return optax.projections.projection_box(z, low, high)
  return Parameterization(lambda key, shape: jnp.broadcast_to(center, shape), _identity, project,
                          f"l2_ball({radius:g})")


def linf_ball(center, radius: float, low: float = 0.0, high: float = 1.0) -> Parameterization:
  """Pixels within L-infinity distance `radius` of `center`, inside [low, high]; starts at center.

  The intersection of two boxes is a box, so one `projection_box` is exact.
  """
  center = _check_center(center, radius)
  lo, hi = jnp.maximum(center - radius, low), jnp.minimum(center + radius, high)
  return Parameterization(lambda key, shape: jnp.broadcast_to(center, shape), _identity,
                          lambda z: optax.projections.projection_box(z, lo, hi),
                          f"linf_ball({radius:g})")


# ImageNet's colour correlation, as the square root of its SVD (Lucid's `to_valid_rgb`): colour
# images are optimised in a space where the three channels are uncorrelated. It is a fixed
# constant of natural images, not estimated from any data set jinvert reads.
COLOR_CORRELATION_SVD_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05],
                                       [0.27, -0.09, 0.03]], np.float32)


def _gray_size(shape, what):
  """(H, W) of a one-channel image shape ((H, W), (1, H, W) or (H, W, 1)), else an error."""
  from jinvert.input_space import layout
  lay = layout(tuple(shape))
  if lay.kind == "features" or lay.channels != 1:
    raise JinvertError(f"the {what} parameterisation draws one-channel images, not inputs of "
                       f"shape {tuple(shape)}")
  return tuple(shape[a] for a in lay.spatial_axes)


def _built_for(shape, what):
  def check(input_shape):
    if tuple(input_shape) != tuple(shape):
      raise JinvertError(f"{what} parameterisation built for {tuple(shape)}, input is "
                         f"{tuple(input_shape)}")
  return check


def fourier(shape=(28, 28), decay: float = 1.0, scale: float = 0.01,
            decorrelate: bool = False, mean: float = 0.0) -> Parameterization:
  """Optimise the real 2-D Fourier spectrum of each channel of an input of `shape` ((H, W), or
  colour (H, W, C) or (C, H, W)); x = sigmoid(irfft2(spectrum / f^decay)).

  Scaling each coefficient by 1/f^decay makes low frequencies cheap and high ones dear, so plain
  gradient steps yield smoother images (Lucid's `fft_image`). With `decorrelate`, a 3-channel
  image's channels are mixed by ImageNet's colour correlation before the sigmoid (Lucid's
  `to_valid_rgb`): the optimiser moves in a space of uncorrelated colours.
  """
  from jinvert.input_space import layout
  lay = layout(shape)
  if lay.kind == "features":
    raise JinvertError(f"fourier parameterisation needs an image, not {shape[0]} features")
  if decorrelate and lay.channels != 3:
    raise JinvertError(f"decorrelated colour needs 3 channels; inputs of {tuple(shape)} have "
                       f"{lay.channels}")
  h, w = (shape[a] for a in lay.spatial_axes)
  fy = np.fft.fftfreq(h)[:, None]
  fx = np.fft.rfftfreq(w)[None, :]
  weights = jnp.asarray(1.0 / np.maximum(np.sqrt(fx ** 2 + fy ** 2), 1.0 / max(h, w)) ** decay,
                        jnp.float32)[None]  # the same for every channel
  mixing = COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))

  check = _built_for(shape, "fourier")

  def init(key, input_shape):
    check(input_shape)
    return scale * jax.random.normal(key, (lay.channels, 2, h, w // 2 + 1))

  def to_input(latent):
    weight = weights.astype(latent.dtype)
    spectrum = jax.lax.complex(latent[:, 0] * weight, latent[:, 1] * weight)
    # ortho: Lucid's scaling by sqrt(h w); and its division by 4
    planes = jnp.fft.irfft2(spectrum, s=(h, w), norm="ortho") / 4  # (C, H, W)
    if decorrelate:
      planes = jnp.tensordot(jnp.asarray(mixing, planes.dtype), planes, axes=1)
    x = jax.nn.sigmoid(planes + mean)
    return {"gray": x[0], "chw": x, "hwc": jnp.moveaxis(x, 0, -1)}[lay.kind]

  shown = f"decay={decay:g}" + (", decorrelated" if decorrelate else "") + (
      f", mean={mean:g}" if mean else "")
  return Parameterization(init, to_input, _identity, f"fourier({shown})")


def pyramid(shape=(28, 28), levels: int = 3, scale: float = 0.5,
            mean: float = -2.0) -> Parameterization:
  """A one-channel image of `shape` ((H, W), (1, H, W) or (H, W, 1)) as the sum of `levels`
  images at halving resolutions (28, 14 and 7 for 28x28), each resized to full size, through a
  sigmoid: x = sigmoid(mean + sum_k up(z_k)).

  A step on a coarse level moves a whole region, so plain gradient steps on a model with no
  notion of locality (an MLP) still draw connected strokes rather than scattered pixels (what
  it buys: experiments/RESULTS.md, "Readable data-free images"). Each level starts
  N(0, `scale`^2); a negative `mean` starts from dark images.

  >>> import jax
  >>> p = pyramid((1, 28, 28))
  >>> [z.shape for z in p.init(jax.random.key(0), (1, 28, 28))]
  [(28, 28), (14, 14), (7, 7)]
  >>> p.to_input(p.init(jax.random.key(0), (1, 28, 28))).shape
  (1, 28, 28)
  """
  h, w = _gray_size(shape, "pyramid")
  check = _built_for(shape, "pyramid")

  def init(key, input_shape):
    check(input_shape)
    return [scale * jax.random.normal(k, (-(-h // 2 ** i), -(-w // 2 ** i)))
            for i, k in enumerate(jax.random.split(key, levels))]

  def to_input(latent):
    total = sum(jax.image.resize(z, (h, w), "linear") for z in latent)
    return jax.nn.sigmoid(total + mean).reshape(shape)

  return Parameterization(init, to_input, _identity,
                          f"pyramid(levels={levels}" + (f", mean={mean:g})" if mean else ")"))


def _computed_once(x):
  """`x`, exactly: times the identity, at full precision. Why: XLA's CPU backend fuses a chain of
  cheap elementwise work into each of its consumers, so the strokes' nearest place was worked
  out again in every pass of their gradient (nine, for six control points); the operand of a
  matrix product is worked out once (what it buys: experiments/BENCHMARKS.md, "The strokes'
  nearest place, worked out once")."""
  width = math.gcd(x.size, 16)
  identity = jnp.eye(width, dtype=x.dtype)
  return jnp.matmul(x.reshape(-1, width), identity,
                    precision=jax.lax.Precision.HIGHEST).reshape(x.shape)


def _bernstein(points: int, segments: int) -> np.ndarray:
  """(segments + 1, points): the weights that take a Bezier curve's `points` control points to
  `segments` + 1 points evenly spaced in its parameter (the ends of its straight pieces)."""
  t = np.linspace(0.0, 1.0, segments + 1)[:, None]
  i = np.arange(points)
  return np.array([math.comb(points - 1, k) for k in i]) * t ** i * (1 - t) ** (points - 1 - i)


def _onto_piece(dy, dx, by, bx):
  """The place nearest to each point (dy, dx) on the straight piece from 0 to (by, bx): how far
  along it (u, in [0, 1]) and the offset from it (ey, ex)."""
  u = jnp.clip((dy * by + dx * bx) / (by ** 2 + bx ** 2 + 1e-6), 0.0, 1.0)
  return u, dy - u * by, dx - u * bx


def _pen(h: int, w: int, bernstein: np.ndarray, sigma: float):
  """draw(control (count, points, 2) in pixels, intensity (count,)) -> (h, w): the strokes' ink
  (`strokes`), its gradient written out. Why: autodiff's gradient through the minimum over
  pieces and the product over strokes ran 3.7x slower on a CPU than this one, which needs the
  nearest piece of each pixel only (experiments/BENCHMARKS.md, "The strokes renderer's
  gradient, written out")."""
  knots = bernstein.shape[0]
  rows = lambda dtype: jnp.arange(h, dtype=dtype)[None, :, None]
  cols = lambda dtype: jnp.arange(w, dtype=dtype)[None, None, :]

  def along(curve):
    """Every pixel's nearest place on each stroke's path, as the piece it lies on plus how far
    along it (in [0, knots - 1]): (count, h, w), the pieces unrolled into elementwise work."""
    knot = curve[..., None, None]                                     # (count, knots, 2, 1, 1)
    best = None
    for piece in range(knots - 1):
      a, b = knot[:, piece], knot[:, piece + 1] - knot[:, piece]      # start, direction
      u, ey, ex = _onto_piece(rows(curve.dtype) - a[:, 0], cols(curve.dtype) - a[:, 1],
                              b[:, 0], b[:, 1])
      here = (ey * ey + ex * ex, piece + u)
      best = here if best is None else tuple(
          jnp.where(here[0] < best[0], new, old) for new, old in zip(here, best))
    return best[1]

  def nearest(curve, place):
    """At each pixel's nearest `place`: the offset from it (ey, ex), how far along its piece (u)
    and which piece, (count, h, w) each. The end of one piece is the start of the next, so
    either reading of a whole number gives the same offset and gradient."""
    piece = jnp.minimum(jnp.floor(place), knots - 2)
    u = place - piece
    piece = piece.astype(jnp.int32)
    at = lambda v: sum(jnp.where(piece == s, v[:, s, None, None], 0.0) for s in range(knots - 1))
    start, direction = curve[:, :-1], curve[:, 1:] - curve[:, :-1]    # (count, pieces, 2)
    ey = rows(curve.dtype) - at(start[..., 0]) - u * at(direction[..., 0])
    ex = cols(curve.dtype) - at(start[..., 1]) - u * at(direction[..., 1])
    return ey * ey + ex * ex, ey, ex, u, piece

  def forward(control, intensity):
    curve = jnp.einsum("sp,npd->nsd", bernstein.astype(control.dtype), control)
    found = nearest(curve, _computed_once(along(curve)))
    falloff = jnp.exp(-found[0] / (2 * sigma ** 2))
    blank = 1 - falloff * intensity[:, None, None]
    return 1 - jnp.prod(blank, 0), (found[1:], falloff, blank)

  @jax.custom_vjp
  def draw(control, intensity):
    return forward(control, intensity)[0]

  def backward(residuals, grad):
    (ey, ex, u, piece), falloff, blank = residuals
    # the other strokes' blank: the product before each stroke times the product after it
    before = jnp.cumprod(jnp.concatenate([jnp.ones_like(blank[:1]), blank[:-1]]), 0)
    after = jnp.cumprod(jnp.concatenate([jnp.ones_like(blank[:1]), blank[:0:-1]]), 0)[::-1]
    d_ink = grad[None] * before * after
    d_intensity = jnp.sum(d_ink * falloff, (1, 2))
    # d is |p - a - u b|^2 at the u that minimises it (or clipped): its gradient is -2e for
    # the piece's start a and -2ue for its direction b; a and b are Bernstein sums of the
    # control points, so control point j gets -2e ((1 - u) B[s, j] + u B[s + 1, j]) from the
    # pixels whose nearest piece is s
    d_distance = d_ink * (1 - blank) * (-1 / (2 * sigma ** 2))
    gy, gx = -2 * d_distance * ey, -2 * d_distance * ex
    per_point = []
    for j in range(bernstein.shape[1]):
      at = lambda k: sum(jnp.where(piece == s, float(bernstein[s + k, j]), 0.0)
                         for s in range(knots - 1))
      weight = (1 - u) * at(0) + u * at(1)
      per_point.append(jnp.stack([jnp.sum(gy * weight, (1, 2)), jnp.sum(gx * weight, (1, 2))], -1))
    return jnp.stack(per_point, 1), d_intensity

  draw.defvjp(forward, backward)
  return draw


def strokes(shape=(28, 28), count: int = 4, points: int = 4, segments: int = 7,
            width: float = 1.3, box: float | None = None) -> Parameterization:
  """A one-channel image of `shape` drawn with `count` pen strokes: each a Bezier curve of
  `points` control points (cubic by default), drawn as `segments` straight pieces, its ink
  exp(-d^2 / (2 width^2)) at distance d from the nearest piece, times the stroke's intensity
  (sigmoid, starting at 0.88); strokes overlap as inks do, 1 - prod(1 - ink).

  Why: four strokes can draw a digit but not the scattered pixel patterns by which an MLP is
  most easily convinced, so what the model is optimised into must be drawn the way a person
  draws (what it buys: experiments/RESULTS.md, "Pen strokes"). Control points
  start N(centre, (H/7)^2) in pixels; `width` is in pixels of a 28-pixel image and scales with
  the image.

  Given a `box`, the drawing is framed as MNIST frames a digit (LeCun et al.: scaled so that
  its longer side fits a 20-pixel box, its centre of mass at the image's centre): the pen's
  path is scaled so that the longer side of its ink (where the ink is over one half,
  sqrt(2 ln 2) widths either side of the path) spans `box` pixels of 28, scaling with the
  image, and moved so that the mean of its points lies at the centre. Why: unframed, the
  optimiser draws a small knot where the MLP's weights are strongest, a digit no reader sees
  (experiments/RESULTS.md, "Framed as the format frames a digit"). The box is the input
  format's (`InputSpace.box`), like its size read from no data. `box=None` draws the path where
  it lies.

  >>> import jax
  >>> p = strokes((1, 28, 28))
  >>> latent = p.init(jax.random.key(0), (1, 28, 28))
  >>> latent["control"].shape, p.to_input(latent).shape
  ((4, 4, 2), (1, 28, 28))
  """
  h, w = _gray_size(shape, "strokes")
  check = _built_for(shape, "strokes")
  bernstein = _bernstein(points, segments)
  sigma = width * min(h, w) / 28
  draw = _pen(h, w, bernstein, sigma)
  centre, spread = np.array([[[h / 2, w / 2]]]), min(h, w) / 7
  reach = 2 * sigma * math.sqrt(2 * math.log(2))  # the ink's width over one half
  span = None if box is None else box * min(h, w) / 28 - reach
  if span is not None and not span > 0:  # a drawing scaled by 0 or less (or NaN) is no drawing
    raise JinvertError(f"strokes: a box of {box:g} pixels of 28 is no wider than the pen's ink, "
                       f"{reach * 28 / min(h, w):.2f} pixels")

  def init(key, input_shape):
    check(input_shape)
    return {"control": jax.random.normal(key, (count, points, 2)),
            "intensity": jnp.full((count,), 2.0)}

  def frame(control):
    """The control points moved and scaled as the path they draw is: a Bezier curve is drawn
    the same by an affine map of its control points as by the map of its points."""
    path = jnp.einsum("sp,npd->nsd", bernstein.astype(control.dtype), control).reshape(-1, 2)
    # at least a pixel: a path that has shrunk to a point is not blown up to infinity
    longer = jnp.maximum(jnp.max(jnp.max(path, 0) - jnp.min(path, 0)), 1.0)
    mean = jnp.mean(path, 0).reshape(1, 1, 2)
    return (control - mean) * (span / longer) + centre.astype(control.dtype)

  def to_input(latent):
    control = centre.astype(latent["control"].dtype) + spread * latent["control"]
    if span is not None:
      control = frame(control)
    return draw(control, jax.nn.sigmoid(latent["intensity"])).reshape(shape)

  return Parameterization(init, to_input, _identity,
                          f"strokes({count}x{points}" + (")" if box is None else
                                                         f", box={box:g})"))


def _outside_nearest(outside, pieces):
  """(count, h, w): how far each pixel lies outside the nearest piece of each capsule, of
  `pieces` (count, segments, k) and `outside(piece)`, the distance of every pixel from a piece
  (the last axis of `piece`, for every pixel or one for each). The nearest piece is found
  without a gradient, then drawn again with one: the minimum's gradient is that piece's alone,
  so the backward pass runs over one piece a pixel, not all of them (what it saves:
  experiments/BENCHMARKS.md, "The capsules' nearest piece and resampling by rows")."""
  far = outside(jax.lax.stop_gradient(pieces)[:, :, None, None])  # (count, segments, h, w)
  count, _, h, w = far.shape
  nearest = jnp.argmin(far, 1).reshape(count, h * w)
  chosen = jax.vmap(lambda piece, i: piece[i])(pieces, nearest)  # one gather of rows
  return outside(chosen.reshape(count, h, w, pieces.shape[-1]))


def capsules(shape=(28, 28), count: int = 3, points: int = 4, segments: int = 7,
             radius: float = 5.0, shading: int = 7, mirror: float | None = 2.0,
             box: float | None = None) -> Parameterization:
  """A one-channel image of `shape` filled with `count` capsules: each a Bezier path of `points`
  control points (drawn as `segments` straight pieces) swept by a radius that is itself a Bezier
  curve (softplus, starting at `radius` pixels of a 28-pixel image), filled where a pixel lies
  within the radius of its nearest piece (sigmoid((radius - distance) / 0.5 px)); the capsules
  join as inks do, 1 - prod(1 - fill), shaded by a `shading` x `shading` grid (bilinear,
  sigmoid). With `mirror`, the image x is joined with its left-right mirror image x' by a
  learned weight, 1 - (1 - x)(1 - sigmoid(g) x'), g starting at `mirror`.

  Why: strokes draw digits, not garments; a few filled shapes can draw a shirt, a shoe or a bag
  but not the scattered pixels an MLP is most easily convinced by, and most products are
  symmetric while shoes are not, so the optimiser keeps or drops the mirror image by image
  (what it buys: experiments/RESULTS.md, "Filled capsules"). Control points start
  N(centre, (H/7)^2) in pixels.

  Given a `box`, the drawing is framed as Fashion-MNIST frames a product: the bounding box of
  the filled shapes (each path's points, out by their radii) scaled so that its longer side
  spans `box` pixels of 28, scaling with the image, and centred. `box=None` draws the shapes
  where they lie.

  >>> import jax
  >>> p = capsules((1, 28, 28), box=28.0)
  >>> latent = p.init(jax.random.key(0), (1, 28, 28))
  >>> latent["control"].shape, latent["radius"].shape, p.to_input(latent).shape
  ((3, 4, 2), (3, 4), (1, 28, 28))
  """
  h, w = _gray_size(shape, "capsules")
  check = _built_for(shape, "capsules")
  bernstein = _bernstein(points, segments)
  unit = min(h, w) / 28  # radii and the box are in pixels of a 28-pixel image
  centre, spread = np.array([[[h / 2, w / 2]]]), min(h, w) / 7
  if box is not None and not box > 0:
    raise JinvertError(f"capsules: a box must be above 0 pixels of 28, got {box:g}")

  def init(key, input_shape):
    check(input_shape)
    path_key, shade_key = jax.random.split(key)
    latent = {"control": jax.random.normal(path_key, (count, points, 2)),
              "radius": jnp.full((count, points), math.log(math.expm1(radius))),
              "shade": 1.0 + 0.1 * jax.random.normal(shade_key, (shading, shading))}
    return latent if mirror is None else latent | {"mirror": jnp.array(mirror, jnp.float32)}

  def outside(piece):
    """How far each pixel lies outside a piece: the last axis of `piece` holds its start (y, x),
    its direction (y, x), its radius at the start and the radius's change along it, each the
    same for every pixel (an axis of 1 each) or one for each."""
    ay, ax, by, bx, start, change = jnp.moveaxis(piece, -1, 0)
    lead = tuple(range(ay.ndim - 2))  # the pixel grid's rank made the pieces' (strict promotion)
    u, ey, ex = _onto_piece(jnp.expand_dims(jnp.arange(h, dtype=piece.dtype)[:, None], lead) - ay,
                            jnp.expand_dims(jnp.arange(w, dtype=piece.dtype)[None], lead) - ax,
                            by, bx)
    return jnp.sqrt(ey * ey + ex * ex + 1e-6) - (start + u * change)

  def to_input(latent):
    dtype = latent["control"].dtype
    control = centre.astype(dtype) + spread * latent["control"]
    path = jnp.einsum("sp,npd->nsd", bernstein.astype(dtype), control)
    radii = jnp.einsum("sp,np->ns", bernstein.astype(dtype),
                       jax.nn.softplus(latent["radius"])) * unit
    if box is not None:
      low = jnp.min(path - radii[..., None], (0, 1), keepdims=True)
      high = jnp.max(path + radii[..., None], (0, 1), keepdims=True)
      # at least a pixel: shapes shrunk to a point are not blown up to infinity
      scale = box * unit / jnp.maximum(jnp.max(high - low), 1.0)
      path, radii = (path - (low + high) / 2) * scale + centre.astype(dtype), radii * scale
    pieces = jnp.concatenate([path[:, :-1], jnp.diff(path, axis=1), radii[:, :-1, None],
                              jnp.diff(radii, axis=1)[..., None]], -1)  # (count, segments, 6)
    fill = jax.nn.sigmoid(-_outside_nearest(outside, pieces) / (0.5 * unit))
    shade = jax.nn.sigmoid(jax.image.resize(latent["shade"], (h, w), "linear"))
    image = (1 - jnp.prod(1 - fill, 0)) * shade
    if mirror is not None:
      image = 1 - (1 - image) * (1 - jax.nn.sigmoid(latent["mirror"]) * image[:, ::-1])
    return image.reshape(shape)

  framed = "" if box is None else f", box={box:g}"
  mirrored = "" if mirror is None else ", mirrored"
  return Parameterization(init, to_input, _identity,
                          f"capsules({count}x{points}{mirrored}{framed})")


def identity_times_m(low: float = 0.0, high: float = 1.0) -> Parameterization:
  """Seed 000's idea, literally: a trainable matrix M between an identity input and the net.

  The net sees x = I @ M, with I the 1x1 identity input and M a (1, n_pixels) matrix. Since
  I @ M = M and d(loss)/dM = I^T d(loss)/dx = d(loss)/dx, every iterate equals optimising the
  input directly with the same optimiser: M *is* the input, so optimise the input directly.
  """
  def init(key, shape):
    return jax.random.uniform(key, (1, int(np.prod(shape))), minval=low, maxval=high).reshape(
        (1,) + tuple(shape))

  def to_input(m):
    identity = jnp.eye(1, dtype=m.dtype)
    return (identity @ m.reshape(1, -1)).reshape(m.shape[1:])

  return Parameterization(init, to_input,
                          lambda m: optax.projections.projection_box(m, low, high), "I@M")


def decoder(decode_fn, latent_dim: int, init_scale: float = 1.0) -> Parameterization:
  """Optimise the latent z of a generative decoder: x = decode_fn(z), a learned image prior.

  Args:
    decode_fn: `decode_fn(z) -> x` for one latent vector, x in the input space.
    latent_dim: size of z.
    init_scale: standard deviation of the starting z (the decoder's prior is N(0, I)).
  """
  def init(key, shape):
    return init_scale * jax.random.normal(key, (latent_dim,))

  return Parameterization(init, decode_fn, _identity, f"decoder(d={latent_dim})")
