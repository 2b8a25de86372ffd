"""optax's steps under any dtype promotion the user's program chose.

optax's bias corrections (Adam's, for one) raise a Python float to an int32 step count, which
JAX's strict dtype promotion (`jax_numpy_dtype_promotion="strict"`) refuses. jinvert's own code
is strict-clean (its tests run strict); the optimiser's step alone runs under standard promotion,
so that a program that runs strict can still use jinvert.

>>> import jax, jax.numpy as jnp, optax
>>> params = jnp.ones(3)
>>> opt = optax.adam(0.1)
>>> with jax.numpy_dtype_promotion("strict"):
...   params, state = update(opt, jnp.ones(3), opt.init(params), params)
>>> [round(p, 4) for p in params.tolist()]   # Adam's first step: 0.1 against the gradient
[0.9, 0.9, 0.9]
"""

import jax
import optax


def update(optimizer: optax.GradientTransformation, grads, state, params):
  """One optimiser step: (new params, new state)."""
  with jax.numpy_dtype_promotion("standard"):
    updates, state = optimizer.update(grads, state, params)
    return optax.apply_updates(params, updates), state


def apply_gradients(train_state, grads):
  """`train_state.apply_gradients(grads=grads)` (flax's TrainState), under standard promotion."""
  with jax.numpy_dtype_promotion("standard"):
    return train_state.apply_gradients(grads=grads)
