"""Dense CRF post-processing (Krähenbühl & Koltun 2011, the MiB paper's "CRF" column) in TF.

The fully connected CRF over the pixels of an image with unary -log P (the network's test-time
probabilities) and two Gaussian Potts pairwise terms,

  appearance  w_b * exp(-|p_i - p_j|^2 / 2 theta_a^2 - |I_i - I_j|^2 / 2 theta_b^2)
  smoothness  w_s * exp(-|p_i - p_j|^2 / 2 theta_g^2)

is solved by `iterations` mean-field updates, Q_i ∝ exp(log P_i + w_b m_b,i + w_s m_s,i), where
m_i(l) = sum_{j != i} k(i, j) Q_j(l) / sum_{j != i} k(i, j) is the Gaussian-weighted mean of the
other pixels' marginals (messages normalised per pixel, as pydensecrf's default normalisation
approximately does). No CRF package builds on Python 3.11 from the registry's wheels, so:

  smoothness  exact: a separable Gaussian convolution truncated at 3 theta_g (zero padding,
              renormalised at the image border);
  appearance  a sparse lattice in the 5-D feature space (y/theta_a, x/theta_a, rgb/theta_b):
              pixels are splatted to their nearest lattice cell (cell side = one standard
              deviation), every occupied cell gathers from its 3^5 - 1 occupied neighbours with
              weight exp(-|offset|^2 / 2), and each pixel reads its cell back. Only occupied
              cells exist (at most one per pixel), so memory is O(pixels), independent of
              theta_b, like the permutohedral lattice of the original implementation. The
              lattice's accuracy against the exact O(N^2) filter is tested in tests/test_crf.py.

Everything is vectorised over the batch and the pixels (images of a batch never exchange
messages). Defaults are the ones pydensecrf's documentation uses (appearance theta_a 80,
theta_b 13, w 10; smoothness theta_g 3, w 3; 5 iterations); the MiB paper does not list its own.
The evaluation's batches hold images of one size, unpadded (kdseg.data.pipeline.eval_dataset):
the CRF sees each image alone.
"""
from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class DenseCRF:
  iterations: int = 5
  bilateral_xy: float = 80.0
  bilateral_rgb: float = 13.0
  bilateral_weight: float = 10.0
  spatial_xy: float = 3.0
  spatial_weight: float = 3.0

  def __post_init__(self):
    if self.iterations < 1:
      raise ValueError(f"--crf_iterations={self.iterations}: give at least 1 mean-field step.")
    for name in ("bilateral_xy", "bilateral_rgb", "spatial_xy"):
      if getattr(self, name) <= 0:
        raise ValueError(f"--crf_{name}={getattr(self, name)}: a standard deviation must be "
                         "positive.")

  @property
  def tag(self) -> str:
    """'crf<iterations>', followed by every parameter when they are not the defaults."""
    if dataclasses.replace(self, iterations=DenseCRF.iterations) == DenseCRF():
      return f"crf{self.iterations}"
    values = dataclasses.astuple(self)
    return "crf" + "-".join(f"{value:g}" for value in values)

  def bilateral_features(self, rgb: tf.Tensor) -> tf.Tensor:
    """[B, H, W, 3] RGB in 0..255 -> [B, H, W, 5] (y, x, r, g, b) in standard deviations."""
    shape = tf.shape(rgb)
    y, x = tf.meshgrid(tf.range(shape[1]), tf.range(shape[2]), indexing="ij")
    positions = tf.cast(tf.stack([y, x], axis=-1), tf.float32) / self.bilateral_xy
    positions = tf.broadcast_to(positions[None], tf.concat([shape[:3], [2]], 0))
    return tf.concat([positions, tf.cast(rgb, tf.float32) / self.bilateral_rgb], axis=-1)


# The lattice Gaussian: multilinear splat and slice (a hat of variance 1/6 cell^2 each) and a
# [BLUR, 1, BLUR] blur per axis (variance 2 BLUR / (1 + 2 BLUR)); the cell side makes the total
# variance one standard deviation squared.
BLUR = 0.5
CELL = 1.0 / math.sqrt(1.0 / 3.0 + 2 * BLUR / (1 + 2 * BLUR))


class _Lattice:
  """Sparse lattice over [B, H, W, F] features in standard deviations (F static).

  Each pixel is splatted onto the 2^F corners of its lattice cell with multilinear weights (the
  sparse matrix S, cells x pixels); the blur runs along each axis between occupied cells (every
  corner a pixel touches exists, so the blur within its own cell's corners is exact); the pixel
  reads back with the same weights: filter(Q) = S^T B_F ... B_1 S Q.
  """

  def __init__(self, features: tf.Tensor):
    num_features = features.shape[-1]
    shape = tf.shape(features)
    features = tf.reshape(features, [shape[0], -1, num_features]) / CELL
    base = tf.floor(features)
    fraction = features - base
    base = tf.cast(base, tf.int64)
    base = base - tf.reduce_min(base, axis=[0, 1]) + 1          # >= 1: neighbours stay >= 0
    extent = tf.reduce_max(base, axis=[0, 1]) + 3               # corner + 1, neighbour + 1
    strides = tf.math.cumprod(extent, exclusive=True, reverse=True)
    image = tf.range(tf.cast(shape[0], tf.int64), dtype=tf.int64)[:, None]
    base_keys = tf.reshape(tf.reduce_sum(base * strides, -1) + image * tf.reduce_prod(extent),
                           [-1])                                                   # [N]
    fraction = tf.reshape(fraction, [-1, num_features])                             # [N, F]
    num_pixels = tf.shape(base_keys)[0]

    corners = np.array(list(itertools.product((0, 1), repeat=num_features)))         # [K, F]
    corner_keys = base_keys[None] + tf.reduce_sum(tf.constant(corners, tf.int64) * strides,
                                                  -1)[:, None]                       # [K, N]
    corner_weights = tf.reduce_prod(tf.where(tf.constant(corners, tf.bool)[:, None, :],
                                             fraction[None], 1.0 - fraction[None]), -1)
    unique, index = tf.unique(tf.reshape(corner_keys, [-1]))
    order = tf.argsort(unique)
    sorted_keys = tf.gather(unique, order)
    self.num_cells = tf.shape(unique)[0]
    cell = tf.gather(tf.math.invert_permutation(order), index)
    pixel = tf.tile(tf.range(num_pixels), [len(corners)])
    self.splat = tf.sparse.SparseTensor(                      # cells x pixels
        tf.cast(tf.stack([cell, pixel], 1), tf.int64), tf.reshape(corner_weights, [-1]),
        tf.cast(tf.stack([self.num_cells, num_pixels]), tf.int64))

    self.blurs = []
    cells = tf.range(self.num_cells)
    for axis in range(num_features):
      targets, sources = [cells], [cells]
      for sign in (-1, 1):
        queries = sorted_keys + sign * strides[axis]
        position = tf.minimum(tf.searchsorted(sorted_keys, queries), self.num_cells - 1)
        found = tf.gather(sorted_keys, position) == queries
        targets.append(tf.boolean_mask(cells, found))
        sources.append(tf.boolean_mask(position, found))
      targets, sources = tf.concat(targets, 0), tf.concat(sources, 0)
      values = tf.where(targets == sources, 1.0, BLUR)
      self.blurs.append(tf.sparse.SparseTensor(
          tf.cast(tf.stack([targets, sources], 1), tf.int64), values,
          tf.cast(tf.stack([self.num_cells, self.num_cells]), tf.int64)))

    # A pixel's weight on itself: within its own cell's corners, per axis
    # (1 - t)^2 + t^2 + 2 BLUR t (1 - t).
    self.own = tf.reduce_prod((1 - fraction) ** 2 + fraction ** 2
                              + 2 * BLUR * fraction * (1 - fraction), -1)[:, None]   # [N, 1]
    self.others = self._filter(tf.ones([num_pixels, 1])) - self.own

  def _filter(self, values: tf.Tensor) -> tf.Tensor:
    """[N, C] per-pixel values -> [N, C] lattice-Gaussian sums, the pixel itself included."""
    grid = tf.sparse.sparse_dense_matmul(self.splat, values)
    for blur in self.blurs:
      grid = tf.sparse.sparse_dense_matmul(blur, grid)
    return tf.sparse.sparse_dense_matmul(self.splat, grid, adjoint_a=True)

  def mean_of_others(self, q: tf.Tensor) -> tf.Tensor:
    """[B, H, W, C] -> [B, H, W, C] weighted mean of the other pixels' values (0 if none)."""
    flat = tf.reshape(q, [-1, tf.shape(q)[-1]])
    others = tf.where(self.others > 1e-6, self.others, 0.0)
    return tf.reshape(tf.math.divide_no_nan(self._filter(flat) - self.own * flat, others),
                      tf.shape(q))


def bilateral_message(features: tf.Tensor, q: tf.Tensor) -> tf.Tensor:
  """Appearance message of marginals q [B, H, W, C] given features [B, H, W, F] in std units."""
  return _Lattice(features).mean_of_others(q)


def _gaussian_taps(sigma: float) -> np.ndarray:
  radius = max(1, math.ceil(3 * sigma))
  return np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2).astype(np.float32)


def spatial_message(q: tf.Tensor, sigma: float) -> tf.Tensor:
  """Smoothness message: exact Gaussian (std `sigma` pixels) mean of the other pixels' q."""
  taps = _gaussian_taps(sigma)
  size = len(taps)

  def blur(planes):  # [N, H, W, 1] -> separable Gaussian sums, zero outside the image
    planes = tf.nn.conv2d(planes, tf.reshape(taps, [size, 1, 1, 1]), 1, "SAME")
    return tf.nn.conv2d(planes, tf.reshape(taps, [1, size, 1, 1]), 1, "SAME")

  shape = tf.shape(q)
  planes = tf.reshape(tf.transpose(q, [0, 3, 1, 2]), [-1, shape[1], shape[2], 1])
  others = blur(tf.ones([1, shape[1], shape[2], 1])) - 1.0
  message = tf.math.divide_no_nan(blur(planes) - planes, others)
  return tf.transpose(tf.reshape(message, [shape[0], shape[3], shape[1], shape[2]]), [0, 2, 3, 1])


def dense_crf(rgb: tf.Tensor, probabilities: tf.Tensor, crf: DenseCRF = DenseCRF()) -> tf.Tensor:
  """Mean-field marginals [B, H, W, C] from RGB images [B, H, W, 3] (0..255) and probabilities."""
  probabilities = tf.cast(probabilities, tf.float32)
  unary = tf.math.log(tf.maximum(probabilities, 1e-8))
  lattice = _Lattice(crf.bilateral_features(rgb))
  q = probabilities
  for _ in range(crf.iterations):
    q = tf.nn.softmax(unary + crf.bilateral_weight * lattice.mean_of_others(q)
                      + crf.spatial_weight * spatial_message(q, crf.spatial_xy), axis=-1)
  return q
