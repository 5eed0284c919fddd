"""Linear probe: multinomial logistic regression on frozen, standardised features.

Model: with standardised features x̂ = (x − μ) / σ (μ, σ of the training features),
  logits = x̂ W + b,   W: [D, C], b: [C].
Objective (weighted mean cross-entropy + L2 weight decay on W, not on b):
  L(W, b) = Σ_i w_i CE(softmax(x̂_i W + b), y_i) / Σ_i w_i + (λ / 2) ‖W‖²
It is strictly convex for λ > 0, so the full-batch L-BFGS solver (optax.lbfgs with a
zoom line search, inside a jitted `lax.while_loop`) reaches the unique optimum; it stops
when ‖∇L‖ < tol or after `max_iter` iterations.

Protocol (the usual frozen-feature linear evaluation, e.g. Kornblith et al. 2019): λ is
chosen from a log-spaced grid by `folds`-fold cross-validated top-1 on the training split
(default 5 folds; pooled: correct held-out predictions over all folds / N), and the probe
refit on the whole training split with that λ is reported on the test split. A single
random hold-out (`folds <= 1`: a `holdout_fraction` of the rows) is the older rule; on the
5,170-image CIFAR subset its choice alone moved one encoder's test top-1 by 3 points
across hold-out seeds, because ~500 held-out images cannot tell neighbouring λ apart
(issue 10); k-fold uses every row once for selection. All (folds+1)·|grid| fits run in one
jitted program along the regularisation path (largest λ first, each fit warm-started from
the previous one). Rows are sharded
over the mesh's `data` axis (padding rows get weight 0), so XLA sums the loss across
devices; nothing depends on the device count but the speed.
"""
from __future__ import annotations

import functools

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from palm_jax.runtime import sharding
from palm_jax.runtime.errors import require

DEFAULT_WEIGHT_DECAYS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


@flax.struct.dataclass
class LinearProbe:
  """A trained probe: `logits = ((x − mean) * inv_std) @ weights + bias`.

  mean, inv_std: `[D]`; weights: `[D, C]`; bias: `[C]`; weight_decay: the λ it was fit with.
  """
  mean: jax.Array
  inv_std: jax.Array
  weights: jax.Array
  bias: jax.Array
  weight_decay: jax.Array


@flax.struct.dataclass
class ProbeFit:
  """How the probe was chosen: the grid, held-out top-1 per λ, the λ picked, solver stats.

  holdout_top1: per λ, the (cross-validated when folds > 1) held-out top-1.
  """
  weight_decays: np.ndarray
  holdout_top1: np.ndarray
  weight_decay: float
  iterations: int
  grad_norm: float


def probe_logits(probe: LinearProbe, features: jax.Array) -> jax.Array:
  """`[N, D]` features → `[N, C]` logits."""
  chex.assert_rank(features, 2)
  return ((features - probe.mean) * probe.inv_std) @ probe.weights + probe.bias


def _loss(params: dict, x: jax.Array, labels: jax.Array, weights: jax.Array,
          weight_decay: jax.Array) -> jax.Array:
  """The objective L(W, b) of the module doc; x: `[N, D]`, labels, weights: `[N]`."""
  logits = x @ params["w"] + params["b"]
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  data = jnp.sum(weights * ce) / jnp.maximum(jnp.sum(weights), 1.0)
  return data + 0.5 * weight_decay * jnp.sum(jnp.square(params["w"]))


def _lbfgs(fun, params: dict, max_iter: jax.Array, tol: jax.Array
           ) -> tuple[dict, jax.Array, jax.Array]:
  """Minimises `fun` from `params` → `(params, iterations, final ‖∇L‖)`."""
  solver = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(fun)

  def body(carry):
    params, state, it, _ = carry
    value, grad = value_and_grad(params, state=state)
    updates, state = solver.update(grad, state, params, value=value, grad=grad, value_fn=fun)
    params = optax.apply_updates(params, updates)
    return params, state, it + 1, optax.tree.norm(optax.tree.get(state, "grad"))

  def cond(carry):
    _, _, it, grad_norm = carry
    return (it < max_iter) & ((it == 0) | (grad_norm >= tol))

  init = (params, solver.init(params), jnp.asarray(0), jnp.asarray(jnp.inf, jnp.float32))
  params, _, iters, grad_norm = jax.lax.while_loop(cond, body, init)
  return params, iters, grad_norm


@functools.partial(jax.jit, static_argnames="num_classes")
def solve_logistic(x: jax.Array, labels: jax.Array, weights: jax.Array,
                   weight_decays: jax.Array, *, num_classes: int, max_iter: int = 1000,
                   tol: float = 1e-5) -> tuple[dict, jax.Array, jax.Array]:
  """Solves P problems (row weights, λ) in sequence, each warm-started from the last.

  x: standardised `[N, D]`; labels: int `[N]`; weights: `[P, N]` row weights (0 = row
  unused); weight_decays: `[P]`. Problem 0 starts from W = 0, b = 0. Ordering the
  problems by decreasing λ (a regularisation path) makes each start close to its optimum,
  and a `lax.scan` lets each problem stop at its own convergence — unlike a vmap, where
  every member would run as long as the slowest. `max_iter`/`tol` are traced (changing
  them does not recompile).
  Returns params `{"w": [P, D, C], "b": [P, C]}`, iterations `[P]`, final ‖∇L‖ `[P]`.
  """
  chex.assert_rank([x, labels, weights, weight_decays], [2, 1, 2, 1])
  params = {"w": jnp.zeros((x.shape[1], num_classes), jnp.float32),
            "b": jnp.zeros((num_classes,), jnp.float32)}

  def step(params, problem):
    row_weights, weight_decay = problem
    fun = functools.partial(_loss, x=x, labels=labels, weights=row_weights,
                            weight_decay=weight_decay)
    params, iters, grad_norm = _lbfgs(fun, params, max_iter, tol)
    return params, (params, iters, grad_norm)

  _, out = jax.lax.scan(step, params, (weights, weight_decays))
  return out


@jax.jit
def _top1(x: jax.Array, labels: jax.Array, weights: jax.Array, params: dict) -> jax.Array:
  """Weighted top-1 of every grid member: x `[N, D]`, weights `[G, N]` → `[G]`."""
  logits = jnp.einsum("nd,gdc->gnc", x, params["w"]) + params["b"][:, None, :]
  correct = (jnp.argmax(logits, -1) == labels[None]).astype(jnp.float32)
  return jnp.sum(weights * correct, -1) / jnp.maximum(jnp.sum(weights, -1), 1.0)


def _place(mesh: Mesh, *arrays: np.ndarray, axis: int = 0) -> list[jax.Array]:
  """Pads rows (along `axis`) to a multiple of the mesh size, shards them over `data`.

  Every process holds the same host arrays; each device takes its slice of them (works
  on one or many processes).
  """
  n = arrays[0].shape[axis]
  padded = -(-n // mesh.size) * mesh.size
  out = []
  for a in arrays:
    widths = [(0, 0)] * a.ndim
    widths[axis] = (0, padded - n)
    a = np.pad(a, widths)
    spec = [None] * a.ndim
    spec[axis] = sharding.DATA
    placement = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*spec))
    out.append(jax.make_array_from_callback(a.shape, placement, lambda idx, a=a: a[idx]))
  return out


def fold_masks(n: int, folds: int, holdout_fraction: float, seed: int) -> np.ndarray:
  """Held-out row masks float32 `[F, n]` (1 = held out) of the λ selection.

  `folds >= 2`: a seeded permutation cut into `folds` near-equal parts (each row held out
  exactly once). Otherwise one random hold-out of `round(holdout_fraction * n)` rows.
  """
  perm = np.random.default_rng(seed).permutation(n)
  if folds >= 2:
    masks = np.zeros((folds, n), np.float32)
    for f, part in enumerate(np.array_split(perm, folds)):
      masks[f, part] = 1.0
    return masks
  masks = np.zeros((1, n), np.float32)
  masks[0, perm[:int(round(holdout_fraction * n))]] = 1.0
  return masks


def fit_linear_probe(features: np.ndarray, labels: np.ndarray, num_classes: int, *,
                     weight_decays=DEFAULT_WEIGHT_DECAYS, holdout_fraction: float = 0.1,
                     folds: int = 5, max_iter: int = 1000, tol: float = 1e-5,
                     seed: int = 0, mesh: Mesh | None = None
                     ) -> tuple[LinearProbe, ProbeFit]:
  """Chooses λ by k-fold cross-validation (or one hold-out), then refits on all rows.

  Args:
    features: `[N, D]` frozen training features; labels: int `[N]` in [0, num_classes).
    weight_decays: the λ grid; with one value no selection is made.
    holdout_fraction: with `folds <= 1`, share of the training rows held out (random,
      seeded) to pick λ (0: no selection, the largest λ).
    folds: cross-validation folds choosing λ (>= 2), or <= 1 for the single hold-out.
    max_iter, tol: L-BFGS stopping rule.
    mesh: rows are sharded over its `data` axis (default: all devices).
  Returns:
    `(LinearProbe, ProbeFit)`.
  """
  features = np.asarray(features, np.float32)
  labels = np.asarray(labels, np.int32)
  n = features.shape[0]
  chex.assert_shape(labels, (n,))
  check_probe_inputs(labels, num_classes, weight_decays, holdout_fraction)
  return fit_on_rows(features, labels, np.ones((n,), bool), num_classes,
                     weight_decays=weight_decays, holdout_fraction=holdout_fraction,
                     folds=folds, max_iter=max_iter, tol=tol, seed=seed,
                     mesh=mesh or sharding.make_mesh())


def check_probe_inputs(labels: np.ndarray, num_classes: int, weight_decays,
                       holdout_fraction: float) -> None:
  """One sentence for each user mistake a probe can be given (before any compilation)."""
  n = labels.shape[0]
  require(n >= 2, f"the linear probe needs at least 2 training images, got {n}.")
  require(labels.min() >= 0 and labels.max() < num_classes,
          f"probe labels span [{labels.min()}, {labels.max()}] but num_classes={num_classes}; "
          "labels must be class ids 0..num_classes-1.")
  require(0.0 <= holdout_fraction < 1.0,
          f"probe holdout_fraction={holdout_fraction} must be in [0, 1); use e.g. 0.1.")
  grid = np.asarray(weight_decays, np.float32).reshape(-1)
  require(grid.size >= 1 and (grid >= 0).all(),
          f"probe weight_decays={list(weight_decays)} must be non-negative numbers.")


def fit_on_rows(features: np.ndarray, labels: np.ndarray, train: np.ndarray,
                num_classes: int, *, weight_decays, holdout_fraction: float, folds: int,
                max_iter: int, tol: float, seed: int, mesh: Mesh
                ) -> tuple[LinearProbe, ProbeFit]:
  """`fit_linear_probe` on the rows where `train` (bool `[N]`) is set; the other rows are
  placed too (weight 0), so every call with the same N compiles once — what a
  cross-validation over the same images needs (`cv_probe.py`). Standardisation statistics
  and the λ-selection folds come from the training rows only.
  """
  train = np.asarray(train, bool)
  idx = np.flatnonzero(train)
  n, n_train = features.shape[0], idx.size
  require(int(folds) <= n_train, f"probe folds={folds} exceeds the {n_train} training "
                                 "images; use fewer folds (e.g. 5).")
  grid = np.asarray(weight_decays, np.float32).reshape(-1)
  mean = features[idx].mean(0)
  inv_std = 1.0 / (features[idx].std(0) + 1e-6)
  x, y = _place(mesh, (features - mean) * inv_std, labels)
  real = train.astype(np.float32)

  # One solve (one compilation) of (F+1)·G problems along the path of decreasing λ: for
  # each λ, first the fits without each fold's held-out rows (to choose λ), then the fit
  # on all training rows (the final probe if λ is chosen), each warm-started from the one
  # before.
  held_out = fold_masks(n_train, int(folds), holdout_fraction, seed)  # [F, n_train]
  masks = np.zeros((held_out.shape[0], n), np.float32)
  masks[:, idx] = held_out
  select = grid.size > 1 and bool((masks.sum(1) >= 1).all() and
                                  (masks.sum(1) < n_train).all())
  if not select:
    masks = np.zeros((1, n), np.float32)
  g, m = grid.size, masks.shape[0] + 1  # m problems per λ: F selection fits + the final.
  order = np.argsort(-grid, kind="stable")  # Path position p ↔ grid index order[p].
  rows = np.concatenate([real[None] - masks, real[None]])           # [m, n] fit weights
  held = np.concatenate([masks, np.zeros((1, n), np.float32)])      # [m, n] scored rows
  fit_w, hold_w = _place(mesh, np.tile(rows, (g, 1)), np.tile(held, (g, 1)), axis=1)
  params, iters, grad_norm = solve_logistic(
      x, y, fit_w, jnp.asarray(np.repeat(grid[order], m)), num_classes=num_classes,
      max_iter=max_iter, tol=tol)
  position = np.empty((g,), int)
  position[order] = np.arange(g)  # Grid index → path position.
  if select:
    top1 = sharding.to_host(_top1(x, y, hold_w, params)).reshape(g, m)[:, :-1]
    sizes = masks.sum(1)
    # Pooled over folds: held-out rows predicted correctly / rows held out.
    holdout_top1 = ((top1 * sizes).sum(1) / sizes.sum())[position].astype(np.float32)
    # Best held-out top-1; among ties the strongest regularisation (the simplest model).
    best_top1 = holdout_top1.max()
    best = int(max(np.flatnonzero(holdout_top1 >= best_top1 - 1e-7), key=lambda i: grid[i]))
  else:
    holdout_top1, best = np.full((g,), np.nan, np.float32), int(np.argmax(grid))
  final = m * position[best] + m - 1
  params, iters, grad_norm = sharding.to_host((params, iters, grad_norm))
  probe = LinearProbe(mean=jnp.asarray(mean), inv_std=jnp.asarray(inv_std),
                      weights=params["w"][final], bias=params["b"][final],
                      weight_decay=jnp.asarray(grid[best]))
  fit = ProbeFit(weight_decays=grid, holdout_top1=holdout_top1,
                 weight_decay=float(f"{grid[best]:.7g}"), iterations=int(iters[final]),
                 grad_norm=float(grad_norm[final]))
  return probe, fit


def top1_accuracy(probe: LinearProbe, features: np.ndarray, labels: np.ndarray) -> float:
  """Share of rows whose arg-max logit is the label."""
  logits = probe_logits(probe, jnp.asarray(features, jnp.float32))
  return float(jnp.mean(jnp.argmax(logits, -1) == jnp.asarray(labels)))
