"""How much class content a conditional generator has, without Inception weights.

Classification accuracy score (CAS; Ravuri & Vinyals 2019, "Classification Accuracy Score
for Conditional Generative Models"): a classifier trained on the generator's
class-conditional samples — the conditioning label taken as the truth — and tested on real
test images. A generator whose classes look like the real ones trains a classifier that
transfers. The reverse direction (Shmelkov et al. 2018's "GAN-test"): a classifier trained
on real training images labels the generator's samples; high when the samples of class c
look like real images of class c (it does not see diversity, CAS does). The yardstick is
the same classifier trained on the real training images and tested on the real test
images: a generator can at best match it.

Two classifiers, each with one fixed recipe for every source (chosen before any result,
never tuned on a test set):
  linear  multinomial logistic regression on raw pixels (`linear_probe`: standardised
          pixels, weight decay from (1e-3, 1e-2, 0.1, 1) by 3-fold CV on the training
          images, at most `linear_max_iter` L-BFGS iterations — with 3,072 pixels and ~5,000
          images the weakly regularised fits are nearly separable and would otherwise run
          to the solver's cap): colour and layout statistics only.
  cnn     a small convnet trained from scratch (`SmallConvNet`: three stages of two 3x3
          convs with ReLU and 2x2 max-pooling, widths `width`·(1, 2, 4), global average
          pooling, a linear head), Adam 1e-3, batch 128, `steps` steps, random x-flips and
          4-pixel translations: sees shapes.
Samples: `num_per_class` images per class, z ~ N(0, I), truncation psi 1, constant noise,
seeded.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from palm_jax.evaluation import linear_probe
from palm_jax.runtime import images as images_lib
from palm_jax.runtime.errors import require

CLASSIFIERS = ("linear", "cnn")


def generate_labelled(gen, num_per_class: int, *, seed: int = 0, chunk: int = 250
                      ) -> tuple[np.ndarray, np.ndarray]:
  """uint8 `[C·n, H, W, ch]` samples of every class and their int labels `[C·n]`."""
  require(gen.c_dim > 0, "CAS needs a class-conditional generator (c_dim > 0); this one is "
                         "unconditional.")
  rng = np.random.default_rng(seed)
  labels = np.repeat(np.arange(gen.c_dim), num_per_class)
  z = rng.standard_normal((labels.size, gen.z_dim)).astype(np.float32)
  out = [images_lib.to_uint8(np.asarray(gen.generate(z[i:i + chunk], labels[i:i + chunk])))
         for i in range(0, labels.size, chunk)]
  return np.concatenate(out), labels


class SmallConvNet(nn.Module):
  """uint8 images `[N, H, W, C]` → logits `[N, num_classes]` (see the module doc)."""
  num_classes: int
  width: int = 16

  @nn.compact
  def __call__(self, x):
    x = x.astype(jnp.float32) / 127.5 - 1.0
    for mult in (1, 2, 4):
      for _ in range(2):
        x = nn.relu(nn.Conv(self.width * mult, (3, 3))(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    return nn.Dense(self.num_classes)(x.mean((1, 2)))


def _augment(key, x):
  """Random x-flips and translations by up to 4 pixels (zero padding), per image."""
  k_flip, k_shift = jax.random.split(key)
  flip = jax.random.bernoulli(k_flip, 0.5, (x.shape[0],))
  x = jnp.where(flip[:, None, None, None], x[:, :, ::-1], x)
  padded = jnp.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)))
  shifts = jax.random.randint(k_shift, (x.shape[0], 2), 0, 9)
  crop = lambda img, s: jax.lax.dynamic_slice(img, (s[0], s[1], 0), x.shape[1:])
  return jax.vmap(crop)(padded, shifts)


@dataclasses.dataclass(frozen=True)
class ConvClassifier:
  """A trained `SmallConvNet`: `predict(images) → labels`."""
  model: SmallConvNet
  params: dict

  def predict(self, images: np.ndarray, batch: int = 500) -> np.ndarray:
    fn = jax.jit(self.model.apply)
    return np.concatenate([np.asarray(jnp.argmax(fn(self.params, images[i:i + batch]), -1))
                           for i in range(0, len(images), batch)])


def train_cnn(train_images: np.ndarray, train_labels: np.ndarray, num_classes: int, *,
              steps: int = 1500, batch_size: int = 128, width: int = 16, lr: float = 1e-3,
              seed: int = 0) -> ConvClassifier:
  """The `cnn` recipe of the module doc (every source the same)."""
  model = SmallConvNet(num_classes, width)
  key = jax.random.PRNGKey(seed)
  params = model.init(key, jnp.zeros((1,) + train_images.shape[1:], jnp.uint8))
  tx = optax.adam(lr)
  images = jnp.asarray(train_images)
  labels = jnp.asarray(train_labels, jnp.int32)

  @jax.jit
  def step(carry, k):
    params, opt = carry
    k_idx, k_aug = jax.random.split(k)
    idx = jax.random.randint(k_idx, (batch_size,), 0, images.shape[0])
    x = _augment(k_aug, images[idx])

    def loss(p):
      logits = model.apply(p, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels[idx]).mean()

    grads = jax.grad(loss)(params)
    updates, opt = tx.update(grads, opt, params)
    return (optax.apply_updates(params, updates), opt)

  carry = (params, tx.init(params))
  for k in jax.random.split(jax.random.fold_in(key, 1), steps):
    carry = step(carry, k)
  return ConvClassifier(model, carry[0])


def _pixels(x: np.ndarray) -> np.ndarray:
  return x.reshape(len(x), -1).astype(np.float32) / 255.0


PIXEL_WEIGHT_DECAYS = (1e-3, 1e-2, 1e-1, 1.0)


def train_classifier(kind: str, images: np.ndarray, labels: np.ndarray, num_classes: int, *,
                     cnn_steps: int, seed: int, linear_max_iter: int = 300):
  """A `predict(images) → labels` function of the `kind` recipe."""
  if kind == "linear":
    probe, _ = linear_probe.fit_linear_probe(
        _pixels(images), labels, num_classes, weight_decays=PIXEL_WEIGHT_DECAYS, folds=3,
        max_iter=linear_max_iter, seed=seed)
    return lambda x: np.asarray(jnp.argmax(linear_probe.probe_logits(
        probe, jnp.asarray(_pixels(x))), -1))
  return train_cnn(images, labels, num_classes, steps=cnn_steps, seed=seed).predict


def scores(sources: dict[str, tuple[np.ndarray, np.ndarray]], real_train, real_test, *,
           num_classes: int, classifiers: Sequence[str] = CLASSIFIERS, cnn_steps: int = 1500,
           linear_max_iter: int = 300, seed: int = 0) -> dict:
  """`{classifier: {"real": real→real top-1, "<name>": {"cas", "reverse"}}}`.

  sources: `{name: (images, labels)}` of each generator's samples; real_train, real_test:
  `(images, labels)` of the real splits.
  """
  for kind in classifiers:
    require(kind in CLASSIFIERS, f"config.classifiers has {kind!r}; use some of "
                                 f"{list(CLASSIFIERS)}.")
  accuracy = lambda predict, data: float(np.mean(predict(data[0]) == data[1]))
  out = {}
  for kind in classifiers:
    kw = dict(cnn_steps=cnn_steps, seed=seed, linear_max_iter=linear_max_iter)
    on_real = train_classifier(kind, *real_train, num_classes, **kw)
    result = {"real": accuracy(on_real, real_test)}
    for name, samples in sources.items():
      on_samples = train_classifier(kind, *samples, num_classes, **kw)
      result[name] = {"cas": accuracy(on_samples, real_test),
                      "reverse": accuracy(on_real, samples)}
    out[kind] = result
  return out
