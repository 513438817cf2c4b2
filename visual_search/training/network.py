"""The adapted embedding network: frozen VGG16 blocks 1-4, then a trainable block 5 and head.

Only block 5 and the projection are trained, so the trunk's output (``block4_pool``) can be
computed once per training image and cached: each epoch then costs a block-5 forward and backward
pass, about a fifth of a full VGG16 pass. Block 5 starts from the base weights' own block 5.

``config`` keys: ``weights`` (the base weights, as ``VISUAL_SEARCH['WEIGHTS']``), ``seed``,
``image_size``, ``dims`` (projection size) and ``gem_p``.
"""

from __future__ import annotations

TRUNK_LAYER = "block4_pool"
HEAD_LAYERS = ("block5_conv1", "block5_conv2", "block5_conv3")


def _keras():
    import keras

    return keras


def build_trunk(config: dict, *, precision: str = "auto"):
    """VGG16 from the input to ``block4_pool``, with the base weights; never trained."""
    from ..embeddings.backbone import build_vgg16

    keras = _keras()
    vgg16 = build_vgg16(config["weights"], image_size=int(config["image_size"]), precision=precision, seed=int(config.get("seed", 0)))
    trunk = keras.Model(vgg16.input, vgg16.get_layer(TRUNK_LAYER).output, name="trunk")
    trunk.trainable = False
    return trunk, vgg16


def build_head(config: dict, base_vgg16=None):
    """Block 5 (from ``base_vgg16``'s weights when given), GeM pooling, projection, L2 norm.

    Takes feature maps of any spatial size ``(n, h, w, 512)``, so training can crop them.
    """
    import tensorflow as tf

    keras = _keras()
    p = float(config.get("gem_p", 3.0))
    inputs = keras.Input((None, None, 512), name="block4_features", dtype="float32")
    x = inputs
    for name in HEAD_LAYERS:
        layer = keras.layers.Conv2D(512, 3, padding="same", activation="relu", name=name, dtype="float32")
        x = layer(x)
        if base_vgg16 is not None:
            source = base_vgg16.get_layer(name)
            layer.set_weights([w.astype("float32") for w in source.get_weights()])
    x = keras.layers.Lambda(
        lambda t: tf.pow(tf.reduce_mean(tf.pow(tf.maximum(t, 1e-6), p), axis=[1, 2]), 1.0 / p), name="gem", dtype="float32"
    )(x)
    x = keras.layers.Dense(int(config["dims"]), use_bias=False, name="projection", dtype="float32")(x)
    outputs = keras.layers.UnitNormalization(name="l2", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="head")


def build_embedding_model(config: dict, weights_path: str | None, *, precision: str = "auto"):
    """The whole adapted model: preprocessed images ``(n, size, size, 3)`` -> unit vectors.

    ``weights_path`` is a file saved by :func:`save_head` (None leaves block 5 at the base weights
    and the projection random: only for tests).
    """
    import tensorflow as tf

    keras = _keras()
    trunk, vgg16 = build_trunk(config, precision=precision)
    head = build_head(config, vgg16)
    if weights_path is not None:
        head.load_weights(weights_path)
    inputs = trunk.input
    features = keras.layers.Lambda(lambda t: tf.cast(t, tf.float32), name="to_float32")(trunk.output)
    return keras.Model(inputs, head(features), name="adapted_vgg16")


def save_head(head, path: str) -> None:
    head.save_weights(path)
