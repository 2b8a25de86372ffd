"""The model that does the opposite (seed 000's answer): digit + random seed -> image.

A conditional VAE (`mnist-cvae`, `jinvert.models.VAE` with n_classes=10) is trained on
(image, label) pairs by the ordinary training loop (`jinvert train mnist-cvae`); sampling
draws z ~ N(0, I) and decodes it with the asked label. A VAE rather than a GAN: it trains
stably with the same pure loop and optimiser in half a minute on two CPU cores, its ELBO is a
loss that can be checked, and it covers every mode of the data, which keeps samples diverse.

Its latent has 2 dimensions: a wider one learns the digit's identity itself, and the decoder
half-ignores the label (experiments/RESULTS.md).

>>> import jax
>>> from jinvert import models
>>> spec = models.get_model("mnist-cvae")
>>> params = spec.init_params(jax.random.key(0))
>>> sample(spec.module(), params, [3, 8], 5, jax.random.key(1)).shape   # 5 of each digit
(2, 5, 28, 28)
"""

import jax
import jax.numpy as jnp

from jinvert.models import VAE


def sample(module: VAE, params, targets, samples: int, key):
  """Decodes `samples` latents z ~ N(0, I) per target class.

  Args:
    module: a conditional VAE.
    params: its parameters.
    targets: (T,) class indices.
    samples: images per target.
    key: `jax.random` key; the same key gives the same images.

  Returns:
    (T, samples, 28, 28) images in [0, 1] (the decoder's Bernoulli means).
  """
  targets = jnp.asarray(targets, jnp.int32)
  z = jax.random.normal(key, (len(targets), samples, module.latent_dim))
  labels = jnp.broadcast_to(targets[:, None], z.shape[:2])
  logits = module.apply(params, z.reshape(-1, module.latent_dim), labels.reshape(-1),
                        method=VAE.decode)
  return jax.nn.sigmoid(logits).reshape(z.shape[:2] + (28, 28))
