"""Presets: complete inversion recipes, chosen by measurement.

`raw` is seed 003's answer: start U(0, 1), ascend the target logit with L2-normalised gradient
steps of length 1, clip to [0, 1], 50 steps. It always fools the model, and the images are
noise to anything else.

`natural` optimises in the latent space of a VAE trained on the same data (a learned prior):
x = sigmoid(decoder(z)), z starting N(0, I), Adam 0.05 on the target's log-probability for 500
steps, the model seeing each image jittered by up to 2 pixels and blurred (Lucid's
transformation robustness). The decoder can only draw images like its training data, and the
robustness keeps the optimiser from exploiting what one exact pixel grid makes this one model
read; each restart starts from its own z, so restarts differ.

Chosen by `experiments/natural_preset_sweep.py` on mnist-mlp, 10 digits x 32 restarts, judged by
an independently trained CNN (agreement: the fraction of images it also assigns to the target;
real test digits have diversity 8.74 on the same measure):
  no robustness, 200 steps:  p >= 0.9948, agreement 78.8% (worst class 65.6%), diversity 7.90
  + weight decay 0.1, 500 steps:      agreement 92.8% (71.9%), diversity 3.35
  jitter + blur, 500 steps:  p >= 0.9945, agreement 99.1% (96.9%), diversity 7.10   <- natural
  jitter + blur + decay 0.1, 500:     agreement 100% (100%), diversity 2.57 (collapsing)
A bound on |z| and a ceiling on the objective changed nothing and were dropped.

`data-free` uses nothing but the model: no dataset, no prior trained on data, no statistic of
data. x = sigmoid(0.5 z - 2) with z ~ N(0, I), so images start dark (mean 0.12) and smooth, as
digits and garments are mostly background; Adam 0.1 on the target's log-probability minus 0.3
x total variation and 0.3 x L1, the model seeing each image jittered by up to 2 pixels and
blurred, 200 steps. Chosen by two measures, removing one ingredient at a time: what a
784-256-256-10 student learns from 60,000 such images (the teacher's soft labels, `jinvert
distill`, 36,000 steps, scored on the real test set), and how often an independently trained
CNN reads the images as their target (`experiments/data_free_distillation.py`, seed 0; mnist-mlp
97.83%, fashion-mlp 87.99%):
                              student, mnist / fashion    CNN agreement, mnist* / fashion
  uniform noise, no inversion:   45.99% / 27.95%           -
  raw (seed 003):                58.05% / 68.93%           65.6% / 88.5%
  data-free:                     97.54% / 87.89%           60.3% / 99.0%   <- data-free
  - dark start (mean 0):         86.80% / 85.29%           22.5% / 95.0%
  - jitter + blur:               97.70% / 87.89%           30.0% / 92.9%
  - total variation:             97.44% / 88.06%           59.1% / 97.6%
  - L1:                          97.56% / 87.60%           58.4% / 99.3%
  natural (the VAE, uses data):  97.80% / 88.11%           98.2% / 94.0%
  the real training images:      97.89% / 88.02%           -
(* the MNIST ablations' agreement is on 10 x 32 images, where data-free itself read 60.6%; their
students come from an earlier run of the same script.) Of the student's training: without mixup
97.33% / 87.71%, without input noise on the transfer images 85.44% / 84.40%.
The dark start carries the student; jitter and blur make the images readable to another model
without costing the student anything; total variation and L1 move either measure by about a
point, within the spread between seeds (18,000-step students: 95.57-95.97% over seeds 0-2).
Three adaptive rounds (later images where the student disagrees) gave 97.51% / 87.80% against
97.54% / 87.89% for one round, so `jinvert distill` runs one round unless asked.
"""

from typing import Callable, NamedTuple

import jax
import optax

from jinvert import objectives, parameterizations, transforms


NATURAL_STEPS = 500
DATA_FREE_STEPS = 200
COUNTERFACTUAL_STEPS = 300
COUNTERFACTUAL_WEIGHT = 0.3


class Preset(NamedTuple):
  """Everything `invert` needs besides the model, the targets and the key."""
  objective: objectives.Objective
  optimizer: optax.GradientTransformation
  parameterization: parameterizations.Parameterization
  steps: int
  transform: Callable | None = None


def raw(steps: int = 50, learning_rate: float = 1.0) -> Preset:
  """Seed 003: normalised-gradient ascent on the target logit from U(0, 1), clipped to [0, 1]."""
  return Preset(objectives.class_logit(),
                optax.chain(optax.normalize_by_update_norm(), optax.sgd(learning_rate)),
                parameterizations.pixels(), steps)


def vae_decode_fn(module, params, image_shape=(28, 28)):
  """`decode(z) -> image in [0, 1]` for one latent vector of a jinvert VAE, shaped
  `image_shape` (any shape of 784 values: (28, 28), (1, 28, 28), (28, 28, 1))."""
  def decode(z):
    logits = module.apply(params, z[None], method=type(module).decode)[0]
    return jax.nn.sigmoid(logits).reshape(image_shape)
  return decode


def natural(vae_module, vae_params, steps: int = NATURAL_STEPS, learning_rate: float = 0.05,
            image_shape=(28, 28), axes=(-2, -1)) -> Preset:
  """A learned prior: Adam on the target log-probability in a VAE's latent space, robust to
  2-pixel jitter and blur; images shaped `image_shape`, spatial `axes` as in `data_free`."""
  return Preset(objectives.class_log_prob(), optax.adam(learning_rate),
                parameterizations.decoder(vae_decode_fn(vae_module, vae_params, image_shape),
                                          vae_module.latent_dim), steps,
                transforms.compose([transforms.jitter(2, axes), transforms.blur(1.0, axes=axes)]))


def data_free(steps: int = DATA_FREE_STEPS, learning_rate: float = 0.1,
              axes=(-2, -1)) -> Preset:
  """Nothing but the model: Adam on the target log-probability from dark images, with a total
  variation and an L1 penalty, robust to 2-pixel jitter and blur (see the module docstring).
  `axes` are the images' two spatial axes ((-3, -2) for channels-last)."""
  return Preset(objectives.class_log_prob() - 0.3 * objectives.total_variation(axes)
                - 0.3 * objectives.l1(),
                optax.adam(learning_rate), parameterizations.sigmoid(scale=0.5, mean=-2.0), steps,
                transforms.compose([transforms.jitter(2, axes), transforms.blur(1.0, axes=axes)]))


def counterfactual(start, max_change: tuple | None = None, distance_weight: float | None = None,
                   steps: int = COUNTERFACTUAL_STEPS, learning_rate: float = 0.01,
                   probability: float = 0.95) -> Preset:
  """The smallest change to `start` (an input in [0, 1]) that the model reads as the target:
  Adam 0.01 from `start` on the target's log-probability, capped at `probability`, minus
  `distance_weight` times the L2 distance moved; inside the box [0, 1], and inside
  `max_change` = ("l2" | "linf", radius) around the start when given.

  Chosen by `experiments/counterfactuals.py` on mnist-mlp, 100 MNIST test digits x the 9 other
  classes, 300 steps (success: the target's probability reaches 0.9):
    distance weight 0.1:  100% success, median L2 change 1.85
    distance weight 0.3:  100% success, median L2 change 1.44   <- the default
    distance weight 1:    91.9% success, median L2 change 1.41
    L2 ball of radius 3:  96.6% success; radius 4: 99.8%, median L2 change 3.52
  """
  if max_change is None:
    parameterization = parameterizations.start_at(start, 0.0, 1.0)
  else:
    kind, radius = max_change
    ball = {"l2": parameterizations.l2_ball, "linf": parameterizations.linf_ball}[kind]
    parameterization = ball(start, radius)
  weight = (0.0 if max_change else COUNTERFACTUAL_WEIGHT) if distance_weight is None \
      else distance_weight
  objective = objectives.class_log_prob_up_to(probability)
  if weight:
    objective = objective - weight * objectives.l2_distance_to(start)
  return Preset(objective, optax.adam(learning_rate), parameterization, steps)
