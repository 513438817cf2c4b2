"""Global pooling of a VGG16 feature map ``(n, h, w, c)`` into L2-normalised ``(n, c)`` vectors.

GeM (generalised mean, Radenović et al. 2018) sits between average (p=1) and max (p->inf)
pooling: it weights the strongest activations more, which suits products photographed on
cluttered shop shelves. Which one is the default is decided by ``benchmarks``.
"""

from __future__ import annotations

import numpy as np

from ..conf import SPEC

POOLINGS = SPEC["POOLING"].choices  # the setting's choices are the poolings


def pool_graph(tf, features, method: str = "gem", p: float = 3.0):
    """``features`` pooled inside a TensorFlow graph (``tf`` the module), not yet normalised: the
    extractor's network ends with it, so batches of feature maps never leave the graph."""
    if method == "avg":
        return tf.reduce_mean(features, axis=[1, 2])
    if method == "max":
        return tf.reduce_max(features, axis=[1, 2])
    if method == "gem":
        clamped = tf.maximum(features, 1e-6)
        return tf.pow(tf.reduce_mean(tf.pow(clamped, p), axis=[1, 2]), 1.0 / p)
    raise ValueError(f"VISUAL_SEARCH['POOLING'] must be one of {POOLINGS}, not {method!r}.")


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
