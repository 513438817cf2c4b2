"""The network of a trained version: a frozen VGG16 trunk, then its last blocks trained, and a head.

Defined here, beside the pretrained backbone, because serving a trained version needs it as much
as training does (:mod:`visual_search.training` builds and trains it; the extractor runs it).

``config["trained_blocks"]`` lists the VGG16 blocks that are trained, in order: ``[4]`` trains
block 4 and pools its output (block 5 is dropped), ``[4, 5]`` blocks 4 and 5, ``[5]`` block 5
only (versions trained before the key existed). The frozen trunk ends at the pooling layer before
the first of them (``block3_pool`` or ``block4_pool``), so its output can be computed once per
training image and cached: each epoch then costs only the trained blocks' forward and backward
passes. The trained blocks start from the base weights' own.

``config`` keys: ``weights`` (the base weights, as ``VISUAL_SEARCH['WEIGHTS']``), ``seed``,
``image_size``, ``dims`` (projection size), ``gem_p`` and ``trained_blocks``.

The trained blocks run in the process's precision (bfloat16 where the CPU has it, with float32
master weights); pooling, projection and normalisation run in float32.
"""

from __future__ import annotations

from . import runtime
from .backbone import build_vgg16, keras_policy

BLOCK_CONVS = {4: ("block4_conv1", "block4_conv2", "block4_conv3"), 5: ("block5_conv1", "block5_conv2", "block5_conv3")}
CHANNELS_IN = {4: 256, 5: 512}


def trained_blocks(config: dict) -> tuple[int, ...]:
    """The VGG16 blocks a version trains: ``(4,)``, ``(4, 5)`` or ``(5,)``."""
    blocks = tuple(int(b) for b in config.get("trained_blocks", [5]))
    if blocks not in ((4,), (4, 5), (5,)):
        raise ValueError(f"trained_blocks must be [4], [4, 5] or [5], not {list(blocks)!r}.")
    return blocks


def parse_blocks(text: str) -> list[int]:
    """``"4,5"`` (a command-line value) -> ``[4, 5]``; ValueError for anything but 4, 4,5 or 5."""
    return list(trained_blocks({"trained_blocks": [int(b) for b in text.split(",")]}))


def trunk_layer(config: dict) -> str:
    """The last frozen layer: the pooling layer before the first trained block."""
    return f"block{trained_blocks(config)[0] - 1}_pool"


def _keras():
    return runtime.keras()


def build_trunk(config: dict, *, precision: str = "auto"):
    """VGG16 from the input to :func:`trunk_layer`, with the base weights; never trained."""
    keras = _keras()
    vgg16 = build_vgg16(config["weights"], image_size=int(config["image_size"]), precision=precision, seed=int(config.get("seed", 0)))
    trunk = keras.Model(vgg16.input, vgg16.get_layer(trunk_layer(config)).output, name="trunk")
    trunk.trainable = False
    return trunk, vgg16


def build_head(config: dict, base_vgg16=None, *, precision: str = "float32"):
    """The trained blocks (from ``base_vgg16``'s weights when given), GeM pooling, projection, L2 norm.

    Takes feature maps of any spatial size ``(n, h, w, channels)``, so training can crop them.
    """
    tf = runtime.tensorflow()
    keras = _keras()
    p = float(config.get("gem_p", 3.0))
    policy = keras_policy(precision)
    blocks = trained_blocks(config)
    inputs = keras.Input((None, None, CHANNELS_IN[blocks[0]]), name=f"{trunk_layer(config)}_features", dtype="float32")
    x = inputs
    for block in blocks:
        if block != blocks[0]:
            x = keras.layers.MaxPooling2D(2, 2, name=f"block{block - 1}_pool", dtype=policy)(x)
        for name in BLOCK_CONVS[block]:
            layer = keras.layers.Conv2D(512, 3, padding="same", activation="relu", name=name, dtype=policy)
            x = layer(x)
            if base_vgg16 is not None:
                layer.set_weights([w.astype("float32") for w in base_vgg16.get_layer(name).get_weights()])

    def gem(t):
        t = tf.cast(t, tf.float32)
        return tf.pow(tf.reduce_mean(tf.pow(tf.maximum(t, 1e-6), p), axis=[1, 2]), 1.0 / p)

    x = keras.layers.Lambda(gem, name="gem", dtype="float32")(x)
    x = keras.layers.Dense(int(config["dims"]), use_bias=False, name="projection", dtype="float32")(x)
    outputs = keras.layers.UnitNormalization(name="l2", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="head")


def build_embedding_model(config: dict, weights_path: str | None, *, precision: str = "auto"):
    """The whole adapted model: preprocessed images ``(n, size, size, 3)`` -> unit vectors.

    ``weights_path`` is a file saved by :func:`save_head` (None leaves the trained blocks at the base
    weights and the projection random: only for tests).
    """
    tf = runtime.tensorflow()
    keras = _keras()
    trunk, vgg16 = build_trunk(config, precision=precision)
    head = build_head(config, vgg16, precision=precision)
    if weights_path is not None:
        head.load_weights(weights_path)
    inputs = trunk.input
    features = keras.layers.Lambda(lambda t: tf.cast(t, tf.float32), name="to_float32")(trunk.output)
    return keras.Model(inputs, head(features), name="adapted_vgg16")


def save_head(head, path: str) -> None:
    head.save_weights(path)
