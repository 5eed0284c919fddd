"""Coverage of a training set by generated images (PALM paper, Section 6, Table 3).

For every generated image g_i (i < N) find its nearest training image in a feature space,

    nn(i)    = argmin_j ||phi(g_i) - phi(x_j)||_2          (ties: the smallest j)
    coverage = |{nn(i) : i < N}| / N                        (N generated, N training images)

so 1.0 means every generated image lands on a different training image and 1/N means all
of them land on one. The paper reports 50.16 % for uniformly sampled latents and 58.87 %
for PALM's images with Inception-v3 features on CIFAR-10.

The search never materialises the N x M distance matrix: queries go to the device one tile
of `query_tile` rows at a time (split over the mesh's `data` axis), and inside one jitted
program a `lax.scan` walks the references `ref_tile` rows at a time keeping a running
(min distance, argmin) per query. Peak memory is O(query_tile x ref_tile + M x D).
Squared distances use ||q||^2 - 2 q.r + ||r||^2 with a HIGHEST-precision matmul (no TF32
on GPUs), clipped at 0; padded reference rows have ||r||^2 = +inf and never win.

Feature spaces (`FEATURE_SPACES`), each named in the result:
  pixels     the raw image as a vector in [0, 1]^(H*W*3)
  inception  pytorch-fid's Inception-v3 pool3 (2048-d), the FID weights file
             (`palm_jax.evaluation.fid.InceptionFeatures`; the paper's space)
  encoder    a palm_jax ResNet: a run's checkpointed encoder or a random one
             (`palm_jax.evaluation.features`)
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from palm_jax.runtime import sharding
from palm_jax.runtime.errors import require

FEATURE_SPACES = ("inception", "encoder", "pixels")


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


@functools.partial(jax.jit, static_argnames=("ref_tile",))
def _nearest_in_tile(queries: jax.Array, refs: jax.Array, ref_sq: jax.Array, *,
                     ref_tile: int) -> tuple[jax.Array, jax.Array]:
  """(argmin int32 [Tq], min squared distance float32 [Tq]) of queries [Tq, D] over refs.

  refs [Mp, D] and ref_sq [Mp] (+inf on padding rows), Mp a multiple of `ref_tile`. Only a
  [Tq, ref_tile] block of distances exists at any time.
  """
  q = queries.astype(jnp.float32)
  q_sq = jnp.sum(q * q, axis=1)

  def body(carry, j):
    best_d, best_i = carry
    r = jax.lax.dynamic_slice_in_dim(refs, j * ref_tile, ref_tile).astype(jnp.float32)
    r_sq = jax.lax.dynamic_slice_in_dim(ref_sq, j * ref_tile, ref_tile)
    cross = jnp.matmul(q, r.T, precision=jax.lax.Precision.HIGHEST)
    d = q_sq[:, None] - 2.0 * cross + r_sq[None, :]          # [Tq, ref_tile]
    i = jnp.argmin(d, axis=1).astype(jnp.int32)              # first index among ties
    dmin = jnp.take_along_axis(d, i[:, None], axis=1)[:, 0]
    better = dmin < best_d                                   # strict: earlier tiles win ties
    return (jnp.where(better, dmin, best_d), jnp.where(better, j * ref_tile + i, best_i)), None

  init = (jnp.full(q.shape[:1], jnp.inf, jnp.float32), jnp.zeros(q.shape[:1], jnp.int32))
  (best_d, best_i), _ = jax.lax.scan(body, init, jnp.arange(refs.shape[0] // ref_tile))
  return best_i, jnp.maximum(best_d, 0.0)


class NearestNeighbours:
  """Exact Euclidean 1-NN of query rows among fixed reference rows, in bounded memory.

    nn = NearestNeighbours(ref_feats [M, D], query_tile=1024, ref_tile=4096)
    index, sq_dist = nn(query_feats [N, D])      # int64 [N], float32 [N]

  `query_tile` is rounded up to a multiple of the device count (queries are split over the
  mesh's `data` axis; references are replicated). Every call compiles one program for the
  shapes `(query_tile, D)` x `(padded M, D)`, reused for every tile and query set.
  """

  def __init__(self, refs: np.ndarray, *, query_tile: int = 1024, ref_tile: int = 4096,
               mesh: Mesh | None = None):
    refs = np.asarray(refs, np.float32)
    require(refs.ndim == 2 and refs.shape[0] >= 1,
            f"nearest-neighbour references must be [M >= 1, D] features, got {refs.shape}.")
    require(query_tile >= 1 and ref_tile >= 1,
            f"config.nn.query_tile={query_tile} and config.nn.ref_tile={ref_tile} must be "
            "positive (e.g. 1024 and 4096).")
    self.mesh = mesh or sharding.make_mesh()
    self.num_refs, self.dim = refs.shape
    self.ref_tile = min(int(ref_tile), _round_up(self.num_refs, 8))
    self.query_tile = _round_up(int(query_tile), self.mesh.size)
    padded = _round_up(self.num_refs, self.ref_tile)
    ref_sq = np.full((padded,), np.inf, np.float32)
    ref_sq[:self.num_refs] = np.sum(refs.astype(np.float64) ** 2, axis=1)
    refs = np.concatenate([refs, np.zeros((padded - self.num_refs, self.dim), np.float32)])
    rep = sharding.replicated(self.mesh)
    self._refs = jax.device_put(refs, rep)
    self._ref_sq = jax.device_put(ref_sq, rep)
    self._query_sharding = NamedSharding(self.mesh, P("data"))

  @property
  def tile_shapes(self) -> dict:
    """The shapes the device sees: the distance block is `distances` and nothing bigger."""
    return {"queries": (self.query_tile, self.dim), "refs": tuple(self._refs.shape),
            "distances": (self.query_tile, self.ref_tile)}

  def lowered(self):
    """The jitted tile program lowered for this search (for `memory_analysis()`)."""
    q = jax.ShapeDtypeStruct((self.query_tile, self.dim), jnp.float32,
                             sharding=self._query_sharding)
    return _nearest_in_tile.lower(q, self._refs, self._ref_sq, ref_tile=self.ref_tile)

  def __call__(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    queries = np.asarray(queries, np.float32)
    require(queries.ndim == 2 and queries.shape[1] == self.dim,
            f"nearest-neighbour queries must be [N, {self.dim}] like the references, got "
            f"{queries.shape}.")
    n, t = queries.shape[0], self.query_tile
    outs = []
    for start in range(0, n, t):   # dispatched asynchronously; synced once at the end
      tile = queries[start:start + t]
      if tile.shape[0] < t:
        tile = np.concatenate([tile, np.zeros((t - tile.shape[0], self.dim), np.float32)])
      outs.append(_nearest_in_tile(jax.device_put(tile, self._query_sharding), self._refs,
                                   self._ref_sq, ref_tile=self.ref_tile))
    if not outs:
      return np.zeros((0,), np.int64), np.zeros((0,), np.float32)
    index = np.concatenate([np.asarray(i) for i, _ in outs])[:n].astype(np.int64)
    dist = np.concatenate([np.asarray(d) for _, d in outs])[:n]
    return index, dist


def coverage_of(nn_index: np.ndarray) -> float:
  """Distinct nearest neighbours / number of generated images (module equation)."""
  nn_index = np.asarray(nn_index)
  require(nn_index.size > 0, "coverage needs at least one generated image.")
  return float(np.unique(nn_index).size / nn_index.size)


def pixel_features(images: np.ndarray) -> np.ndarray:
  """uint8 [N, H, W, C] → float32 [N, H*W*C] in [0, 1]."""
  images = np.asarray(images)
  return images.reshape(images.shape[0], -1).astype(np.float32) / 255.0


def make_featurizer(space: str, *, inception_path: str = "", encoder=None,
                    batch_size: int = 500, mesh: Mesh | None = None
                    ) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
  """`(name, images uint8 [N, H, W, 3] -> float32 [N, D])` for a feature space.

  name: "pixels", "inception", or "encoder-random" / "encoder-<step>" (so results of
  different encoders never share a file). `encoder`: a `features.Encoder` (space=encoder).
  """
  require(space in FEATURE_SPACES, f"config.features={space!r} is not a feature space; use "
                                   f"one of {FEATURE_SPACES}.")
  if space == "pixels":
    return "pixels", pixel_features
  if space == "inception":
    require(bool(inception_path), "config.features='inception' needs config.inception, the "
            "FID weights file (pytorch-fid's pt_inception-2015-12-05-6726825d.pth or its "
            ".npz); or use config.features=pixels or encoder.")
    from palm_jax.evaluation import fid as metrics_fid  # pylint: disable=g-import-not-at-top
    net = metrics_fid.InceptionFeatures(inception_path, batch_size=batch_size)
    return "inception", lambda x: net(x).astype(np.float32)
  from palm_jax.evaluation import features  # pylint: disable=g-import-not-at-top
  require(encoder is not None, "config.features='encoder' needs an encoder.")
  extractor = features.FeatureExtractor(
      encoder, batch_size=_round_up(batch_size, (mesh or sharding.make_mesh()).size),
      mesh=mesh)
  name = "encoder-random" if encoder.init == "random" else f"encoder-{encoder.step}"
  return name, extractor
