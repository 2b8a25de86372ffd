"""The model zoo: Flax modules, each registered once with everything jinvert knows of it.

A model is one `ModelSpec` in `REGISTRY`: how to build its module, its input shape, the data
it learns from and its training recipe; `jinvert train --help` lists them from here. Every
classifier returns logits (`jax.nn.softmax` gives the seeds' softmax outputs), and sows its
hidden activations by layer name for objectives that maximise or silence single units
(`apply_with_activations`).

>>> spec = get_model("mnist-mlp")
>>> spec.input_shape, spec.dataset, spec.recipe.describe()
((28, 28), 'mnist', 'adam 0.001, batch 100, 15 epochs')
>>> logits, activations = apply_with_activations(spec.module())(
...     spec.init_params(jax.random.key(0)), jnp.zeros((1, 28, 28)))
>>> logits.shape, sorted(activations)
((1, 10), ['hidden1', 'hidden1_pre', 'hidden2', 'hidden2_pre'])
"""

import dataclasses
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jinvert import convolution
from jinvert.errors import JinvertError

ACTIVATIONS = {"relu": nn.relu, "sigmoid": nn.sigmoid}


class MLP(nn.Module):
  """Flatten, hidden layers dense1, dense2, ..., out; sows hidden1_pre, hidden1, hidden2_pre, ...

  Attributes:
    hidden: widths of the hidden layers.
    outputs: width of the output layer.
    activation: `relu` or `sigmoid`, applied to every hidden layer.
    input_ndim: trailing axes of one input, flattened into features (2 for 28x28 images).
    kernel_init, bias_init: initialisers shared by every layer.
  """
  hidden: Sequence[int]
  outputs: int = 10
  activation: str = "relu"
  input_ndim: int = 2
  kernel_init: Callable = nn.initializers.glorot_uniform()
  bias_init: Callable = nn.initializers.zeros

  @nn.compact
  def __call__(self, x):
    h = x.reshape(x.shape[:x.ndim - self.input_ndim] + (-1,))
    for i, width in enumerate(self.hidden, start=1):
      h = nn.Dense(width, kernel_init=self.kernel_init, bias_init=self.bias_init,
                   name=f"dense{i}")(h)
      # the pre-activation too: maximising it never sticks at a ReLU that is off at the start
      self.sow("intermediates", f"hidden{i}_pre", h)
      h = ACTIVATIONS[self.activation](h)
      self.sow("intermediates", f"hidden{i}", h)
    return nn.Dense(self.outputs, kernel_init=self.kernel_init, bias_init=self.bias_init,
                    name="out")(h)


class CNN(nn.Module):
  """A small CNN, trained independently of the MLPs to judge their inversions (cross-model
  agreement): conv 16 3x3 stride 2, conv 32 3x3 stride 2, dense 64 (sown as hidden1), out.
  Strided convolutions rather than max-pooling: 4.5x faster to train on the 2-core CPU."""
  outputs: int = 10

  @nn.compact
  def __call__(self, x):
    h = x.reshape(x.shape[:-2] + (28, 28, 1))
    h = nn.relu(convolution.conv(16, (3, 3), strides=2, name="conv1")(h))
    h = nn.relu(convolution.conv(32, (3, 3), strides=2, name="conv2")(h))
    h = nn.relu(nn.Dense(64, name="dense1")(h.reshape(h.shape[:-3] + (-1,))))
    self.sow("intermediates", "hidden1", h)
    return nn.Dense(self.outputs, name="out")(h)


class ResNetJudge(nn.Module):
  """A second judge of another architecture than `CNN`: a residual convnet, wider (32 then 64
  channels), pooled over positions. Conv 32 3x3 stride 2; two residual blocks of two conv 32
  3x3; conv 64 3x3 stride 2; one residual block of 64; global average pool (sown as hidden1);
  out. Trained with outlier exposure (`train`'s `xent_oe`), so noise is not read as a digit."""
  outputs: int = 10

  @nn.compact
  def __call__(self, x):
    h = x.reshape(x.shape[:-2] + (28, 28, 1))
    h = nn.relu(convolution.conv(32, (3, 3), strides=2, name="stem")(h))
    for name, width, blocks in (("a", 32, 2), ("b", 64, 1)):
      if width != h.shape[-1]:
        h = nn.relu(convolution.conv(width, (3, 3), strides=2, name=f"{name}_down")(h))
      for i in range(blocks):
        r = nn.relu(convolution.conv(width, (3, 3), name=f"{name}{i}_1")(h))
        h = nn.relu(h + convolution.conv(width, (3, 3), name=f"{name}{i}_2")(r))
    h = jnp.mean(h, axis=(-3, -2))
    self.sow("intermediates", "hidden1", h)
    return nn.Dense(self.outputs, name="out")(h)


class ConvNet(nn.Module):
  """Two blocks of conv 3x3 (16, then 32), optional BatchNorm, ReLU and max-pool 2; dense
  `hidden`, ReLU; out. Sows block1_pre and block2_pre (each convolution before its ReLU: an
  objective there is never stuck at a dead ReLU), block1 and block2 (after it) and hidden1; with
  BatchNorm also block1_conv and block2_conv, its inputs (`ModelSpec.batchnorm`). Grey inputs
  (..., 28, 28) gain a channel axis; colour ones are (..., 28, 28, 3).

  mnist-cnn has BatchNorm: `apply(variables, x)` uses its running statistics (inference);
  `train=True` uses the batch's and updates them (with `mutable=["batch_stats"]`, as
  `jinvert.train` does).
  """
  hidden: int = 128
  batch_norm: bool = True
  outputs: int = 10

  @nn.compact
  def __call__(self, x, train: bool = False):
    h = x if x.shape[-1] == 3 else x.reshape(x.shape[:-2] + (28, 28, 1))
    for i, width in enumerate((16, 32), start=1):
      conv = convolution.conv(width, (3, 3), name=f"conv{i}")(h)
      h = nn.BatchNorm(use_running_average=not train, name=f"bn{i}")(conv) \
          if self.batch_norm else conv
      self.sow("intermediates", f"block{i}_pre", h)
      if self.batch_norm:
        self.sow("intermediates", f"block{i}_conv", conv)  # what BatchNorm normalises
      h = nn.relu(h)
      self.sow("intermediates", f"block{i}", h)
      h = convolution.max_pool_2d(h)
    h = nn.relu(nn.Dense(self.hidden, name="dense1")(h.reshape(h.shape[:-3] + (-1,))))
    self.sow("intermediates", "hidden1", h)
    return nn.Dense(self.outputs, name="out")(h)


class LeNet5(nn.Module):
  """LeNet-5 as DAFL's lenet.py: conv 6 5x5, ReLU, max-pool 2; conv 16 5x5, ReLU, max-pool 2;
  conv 120 5x5, ReLU; dense 84, ReLU; out. It sees 32x32: MNIST's 28x28 padded by 2 with zeros,
  here, so it takes MNIST's images as they are. `width` scales every layer (0.5: LeNet-5-half,
  3-8-60-42). Sows block1_pre to block3_pre (before each ReLU), block1 to block3, and hidden1."""
  width: float = 1.0
  outputs: int = 10

  @nn.compact
  def __call__(self, x):
    h = x.reshape(x.shape[:-2] + (28, 28, 1))
    h = jnp.pad(h, [(0, 0)] * (h.ndim - 3) + [(2, 2), (2, 2), (0, 0)])
    for i, channels in enumerate((6, 16, 120), start=1):
      h = convolution.conv(int(channels * self.width), (5, 5), padding="VALID",
                           name=f"conv{i}")(h)
      self.sow("intermediates", f"block{i}_pre", h)
      h = nn.relu(h)
      self.sow("intermediates", f"block{i}", h)
      if i < 3:
        h = convolution.max_pool_2d(h)
    h = nn.relu(nn.Dense(int(84 * self.width), name="dense1")(h.reshape(h.shape[:-3] + (-1,))))
    self.sow("intermediates", "hidden1", h)
    return nn.Dense(self.outputs, name="out")(h)


class VAE(nn.Module):
  """A variational autoencoder on 28x28 images, conditional on a class when n_classes > 0.

  `apply(params, x, labels, key)` returns (pixel logits (N, 784), mean, logvar), sampling the
  latent with `key` (its mean when key is None); `method=VAE.decode` maps latents to logits.
  """
  latent_dim: int = 16
  hidden: int = 512
  n_classes: int = 0

  def setup(self):
    self.encoder = nn.Dense(self.hidden)
    self.encoder_mean = nn.Dense(self.latent_dim)
    self.encoder_logvar = nn.Dense(self.latent_dim)
    self.decoder = nn.Dense(self.hidden)
    self.decoder_out = nn.Dense(28 * 28)

  def _condition(self, h, labels):
    if not self.n_classes:
      return h
    labels = jnp.zeros(h.shape[:-1], jnp.int32) if labels is None else labels
    return jnp.concatenate([h, jax.nn.one_hot(labels, self.n_classes, dtype=h.dtype)], -1)

  def encode(self, x, labels=None):
    h = nn.relu(self.encoder(self._condition(x.reshape(x.shape[:-2] + (-1,)), labels)))
    return self.encoder_mean(h), self.encoder_logvar(h)

  def decode(self, z, labels=None):
    return self.decoder_out(nn.relu(self.decoder(self._condition(z, labels))))

  def __call__(self, x, labels=None, key=None):
    mean, logvar = self.encode(x, labels)
    z = mean if key is None else mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape)
    return self.decode(z, labels), mean, logvar


@dataclasses.dataclass(frozen=True)
class Recipe:
  """A training recipe (`jinvert.train`).

  Attributes:
    optimizer: `adam`, `adagrad` or `sgd` (optax's; adagrad starts its accumulator at 0.1, as
      TF does).
    learning_rate: step size.
    batch_size: examples per step.
    epochs: passes over the training set (used when `steps` is None).
    steps: a fixed number of steps, as seed 002's `for i in range(2000)` loop.
    loss: a name in `train.LOSSES`: `mean_xent`, `sum_xent` (seed 002's), `mse`, `elbo`.
    log_every: epochs between progress lines.
  """
  optimizer: str
  learning_rate: float
  batch_size: int
  epochs: int = 1
  steps: int | None = None
  loss: str = "mean_xent"
  log_every: int = 1

  def describe(self) -> str:
    length = f"{self.steps} steps" if self.steps is not None else f"{self.epochs} epochs"
    loss = "" if self.loss == "mean_xent" else f" on {self.loss}"
    return f"{self.optimizer} {self.learning_rate:g}{loss}, batch {self.batch_size}, {length}"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """What jinvert knows about a registered model.

  Attributes:
    name: registry name.
    make: `make(init)` returns the Flax module for an init scheme name.
    input_shape: shape of one input.
    dataset: the dataset it trains on by default (`jinvert.data.DATASETS`).
    recipe: how `jinvert train` trains it.
    summary: its architecture in a few words, for `jinvert train --help`.
    inits: the init schemes `make` accepts; the first is the default.
    layers: names of the sown activations (`hiddenN_pre` before the nonlinearity, `hiddenN`
      after), the first being the default for unit objectives.
    task: `classifier`, `regression`, `autoencoder` or `generator`.
    n_classes: the classes a classifier (or a conditional generator) tells apart.
    report: `report(params) -> dict` of what `jinvert train` adds to its JSON line, if anything.
    batchnorm: {activation: BatchNorm module}: each BatchNorm layer's input, as sown, and the
      module whose running statistics (`batch_stats`) describe it.
    distill: how it learns when it is a distilled student: the `distill.StudentRecipe` fields
      that differ for it. Gaussian noise of 0.3 teaches an MLP the teacher around the images;
      a convnet learns that noise instead of the teacher, and learns more from elastically
      distorted images (experiments/RESULTS.md).
  """
  name: str
  make: Callable[[str], nn.Module]
  input_shape: tuple
  dataset: str
  recipe: Recipe
  summary: str
  inits: tuple = ("default",)
  layers: tuple = ()
  task: str = "classifier"
  n_classes: int = 10
  report: Callable | None = None
  batchnorm: dict = dataclasses.field(default_factory=dict)
  distill: dict = dataclasses.field(default_factory=dict)

  def module(self, init: str | None = None) -> nn.Module:
    init = self.inits[0] if init is None else init
    if init not in self.inits:
      raise JinvertError(f"model {self.name!r} has no init {init!r}; choose one of: "
                         f"{', '.join(self.inits)}")
    return self.make(init)

  def init_params(self, key, init: str | None = None):
    return _init(self.module(init), key, jnp.zeros((1,) + self.input_shape, jnp.float32))


# One compiled program rather than one per op: 2-8x faster the first time in a process (mnist-mlp
# 2.0 s -> 1.0 s, lenet5 8.9 s -> 1.5 s), the same values bit for bit. The module is static, so
# equal modules share the program: their initializers must be the same objects (constants below).
_init = jax.jit(lambda module, key, x: module.init(key, x), static_argnums=0)


# seed 000's tf.random_normal: stddev 1 for weights and biases
_SEED_NORMAL = nn.initializers.normal(stddev=1.0)
# seed 002: truncated normal stddev 0.1 (TF truncates at 2 stddev), biases 0.1
_R2RT_KERNEL = nn.initializers.truncated_normal(stddev=0.1, lower=-2.0, upper=2.0)
_R2RT_BIAS = nn.initializers.constant(0.1)


def _mnist_mlp(init):
  if init == "seed-normal":
    return MLP((256, 256), kernel_init=_SEED_NORMAL, bias_init=_SEED_NORMAL)
  return MLP((256, 256))


def _r2rt_mlp(init):
  return MLP((100, 100), activation="sigmoid", kernel_init=_R2RT_KERNEL, bias_init=_R2RT_BIAS)


def _weight_and_bias(params):
  layer = params["params"]["out"]
  return {"weight": float(layer["kernel"][0, 0]), "bias": float(layer["bias"][0])}


_MLP_LAYERS = ("hidden1_pre", "hidden1", "hidden2_pre", "hidden2")

# experiments/RESULTS.md, "Distilling convnets": a convnet student keeps learning its teacher
# from distorted, mixed batches well past the MLP's 36,000 steps
_CONVNET_STUDENT = {"noise": 0.1, "distortion": 34.0, "steps": 108_000}

_LENET_LAYERS = ("block1_pre", "block1", "block2_pre", "block2", "block3_pre", "block3",
                 "hidden1")

REGISTRY = {
    spec.name: spec for spec in (
        ModelSpec("mnist-mlp", _mnist_mlp, (28, 28), "mnist",
                  Recipe("adam", 1e-3, batch_size=100, epochs=15),
                  "seed 000/001: 784-256-256-10, ReLU", ("glorot", "seed-normal"), _MLP_LAYERS),
        ModelSpec("r2rt-mlp", _r2rt_mlp, (28, 28), "mnist",
                  Recipe("adagrad", 0.01, batch_size=1000, steps=2000, loss="sum_xent"),
                  "seed 002: 784-100-100-10, sigmoid", ("truncated-normal",), _MLP_LAYERS),
        ModelSpec("fashion-mlp", lambda init: MLP((128,)), (28, 28), "fashion-mnist",
                  Recipe("adam", 1e-3, batch_size=32, epochs=10),
                  "seed 003: Flatten-Dense(128, relu)-Dense(10)", ("glorot",),
                  ("hidden1_pre", "hidden1")),
        # seed 004: model.fit(epochs=100000, batch_size=100) on 100 points, one step an epoch
        ModelSpec("linear", lambda init: MLP((), outputs=1, input_ndim=1), (1,), "seed004-linear",
                  Recipe("adam", 1e-3, batch_size=100, epochs=100_000, loss="mse",
                         log_every=10_000),
                  "seed 004: Dense(1) on a scalar", ("glorot",), task="regression",
                  report=_weight_and_bias),
        ModelSpec("cnn", lambda init: CNN(), (28, 28), "mnist",
                  Recipe("adam", 1e-3, batch_size=128, epochs=3),
                  "the independent judge: conv 16-32 stride 2, dense 64", ("lecun",),
                  ("hidden1",)),
        ModelSpec("judge-cnn", lambda init: CNN(), (28, 28), "mnist",
                  Recipe("adam", 1e-3, batch_size=128, epochs=3, loss="xent_oe"),
                  "the first judge: cnn trained with outlier exposure", ("lecun",),
                  ("hidden1",)),
        ModelSpec("judge-resnet", lambda init: ResNetJudge(), (28, 28), "mnist",
                  Recipe("adam", 1e-3, batch_size=128, epochs=2, loss="xent_oe"),
                  "the second judge: a residual convnet 32-64, trained with outlier exposure",
                  ("lecun",), ("hidden1",)),
        ModelSpec("mnist-cnn", lambda init: ConvNet(), (28, 28), "mnist",
                  Recipe("adam", 1e-3, batch_size=128, epochs=3),
                  "conv 16-32 3x3 with BatchNorm and max-pool, dense 128", ("lecun",),
                  ("block1_pre", "block1_conv", "block1", "block2_pre", "block2_conv", "block2",
                   "hidden1"), batchnorm={"block1_conv": "bn1", "block2_conv": "bn2"}),
        ModelSpec("color-cnn", lambda init: ConvNet(hidden=64, batch_norm=False), (28, 28, 3),
                  "colored-mnist", Recipe("adam", 1e-3, batch_size=128, epochs=2),
                  "conv 16-32 3x3 with max-pool, dense 64, on colour images", ("lecun",),
                  ("block1_pre", "block1", "block2_pre", "block2", "hidden1")),
        ModelSpec("lenet5", lambda init: LeNet5(), (28, 28), "mnist",
                  Recipe("adam", 1e-3, batch_size=256, epochs=10),
                  "LeNet-5 (DAFL's): conv 6-16-120 5x5, dense 84, on MNIST padded to 32x32",
                  ("lecun",), _LENET_LAYERS, distill=_CONVNET_STUDENT),
        ModelSpec("lenet5-half", lambda init: LeNet5(width=0.5), (28, 28), "mnist",
                  Recipe("adam", 1e-3, batch_size=256, epochs=10),
                  "LeNet-5-half, the data-free students' model: conv 3-8-60 5x5, dense 42",
                  ("lecun",), _LENET_LAYERS, distill=_CONVNET_STUDENT),
        ModelSpec("vae", lambda init: VAE(), (28, 28), "mnist",
                  Recipe("adam", 1e-3, batch_size=128, epochs=10, loss="elbo"),
                  "the natural preset's prior: a VAE, latent 16", ("lecun",),
                  task="autoencoder"),
        # a 2-D latent leaves the digit to the label (see jinvert.generate)
        ModelSpec("mnist-cvae", lambda init: VAE(latent_dim=2, n_classes=10), (28, 28), "mnist",
                  Recipe("adam", 1e-3, batch_size=128, epochs=10, loss="elbo"),
                  "seed 000's generator: a conditional VAE, latent 2", ("lecun",),
                  task="generator"),
    )
}


def get_model(name: str) -> ModelSpec:
  """Looks a model up by name; the error lists the valid names."""
  try:
    return REGISTRY[name]
  except KeyError:
    raise JinvertError(f"unknown model {name!r}; choose one of: {', '.join(REGISTRY)}") from None


def require_task(name: str, task: str, what: str, hints: dict | None = None) -> "ModelSpec":
  """The spec of model `name`, which must do `task`; the error names what it does instead,
  and `hints[its task]` where given (e.g. the command that takes it)."""
  spec = get_model(name)
  if spec.task != task:
    hint = (hints or {}).get(spec.task)
    raise JinvertError(f"{what} must be a {task} checkpoint; it holds {spec.name!r}, a "
                       f"{spec.task}" + (f" ({hint})" if hint else ""))
  return spec


def apply_with_activations(module: nn.Module):
  """Returns `fn(params, x) -> (outputs, {layer name: activation})` for a sowing module."""
  def fn(params, x):
    out, state = module.apply(params, x, mutable=["intermediates"])
    sown = state.get("intermediates", {})
    return out, {name: value[0] for name, value in sown.items()}
  return fn
