"""Train an adapted embedding from the shop's images and save it as a :class:`ModelVersion`.

How it stays fast on a CPU: VGG16's first blocks are frozen (1-3 when block 4 is trained,
``trained_blocks=[4]``, the default, or blocks 4 and 5; 1-4 with ``[5]``), so their output for each
training image (a clean view, plus ``augmented_views`` random customer-like views, see
:mod:`.augment`) is computed once, in bfloat16 where the CPU supports it, and kept in memory as
float16. Each epoch then runs only the trained blocks and the projection head, forwards and
backwards (bfloat16 again, with float32 master weights), on those cached maps, with more
augmentation applied to the maps themselves (mirroring, random crops).

The loss is a normalised softmax with an additive cosine margin (CosFace, Wang et al. 2018) over
products, which pulls a product's images together and pushes other products away, plus the same
over categories (weighted ``category_weight``) when the shop's products have one.

Everything random (held-out split, augmentation, initialisation, batch order) follows ``seed``.
``should_stop()`` is checked between batches: training stops cleanly (:class:`Cancelled`), and
nothing is saved or switched.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ..conf import settings
from ..embeddings import images, runtime
from ..embeddings.adapted import build_head, build_trunk, trained_blocks
from ..embeddings.augment import augment
from ..ranking import fit_whitening, l2_normalise, whiten
from . import evaluation
from .dataset import Item, NotEnoughData

logger = logging.getLogger("visual_search")

# progress(stage, done, total): stages "features", "training", "evaluating".
Progress = Callable[[str, int, int], None]


class Cancelled(Exception):
    """Training was asked to stop (``should_stop()`` returned True, or Ctrl-C)."""


OBJECTIVES = ("distil", "classify")


@dataclass
class TrainingOptions:
    """What to train and how; the defaults are the ones measured in docs/adapting.md.

    ``objective``: ``"distil"`` (the default) teaches one pass of the network to give the vector
    the model in use gives from all its test-time views (its stored vectors are the targets);
    ``"classify"`` trains it to tell the shop's products apart (CosFace over products and
    categories). The options left at None take the objective's measured default (see
    :data:`OBJECTIVE_DEFAULTS`); ``image_size`` None is the serving ``IMAGE_SIZE`` when distilling.
    """

    objective: str = "distil"
    epochs: int | None = None
    seed: int = 0
    image_size: int | None = None
    # The projection's size (classify; a distilled network keeps the 512 channels it pools).
    dims: int | None = None
    held_out: float = 0.2
    augmented_views: int | None = None
    # The VGG16 blocks trained (see network.py): [4], [4, 5] or [5].
    trained_blocks: tuple = (4,)
    batch_size: int = 32
    learning_rate: float | None = None
    head_learning_rate: float = 4e-3
    # "cosine": a linear warm-up over warmup_epochs, then cosine decay to zero at the last epoch;
    # "constant": the learning rates throughout.
    schedule: str = "cosine"
    warmup_epochs: float = 0.5
    margin: float = 0.1
    temperature: float = 0.05
    category_weight: float = 0.3
    # Stop after the last epoch that fits in this many seconds from the start (None: all epochs).
    time_limit: float | None = None

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(map(repr, OBJECTIVES))}, not {self.objective!r}.")
        if self.distil and self.dims not in (None, DISTILLED_DIMS):
            raise ValueError(
                f"dims={self.dims}: a distilled network keeps VGG16's {DISTILLED_DIMS} pooled channels, so its "
                "vectors are of the model in use's kind. Leave dims out, or train with objective 'classify'."
            )
        for name, value in OBJECTIVE_DEFAULTS[self.objective].items():
            if getattr(self, name) is None:
                setattr(self, name, int(settings.IMAGE_SIZE) if value == "IMAGE_SIZE" else value)

    @property
    def distil(self) -> bool:
        return self.objective == "distil"

    @classmethod
    def from_settings(cls, **overrides) -> TrainingOptions:
        defaults = {k: v for k, v in dict(settings.TRAINING).items() if k in cls.__dataclass_fields__}
        defaults.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**defaults)


# A distilled network's vectors: VGG16's pooled block-4 (or block-5) channels, unprojected.
DISTILLED_DIMS = 512
# Each objective's measured defaults (docs/adapting.md), for the options left at None. A
# distillation's epochs are left to the number of images (:func:`distil_epochs`).
OBJECTIVE_DEFAULTS = {
    "distil": {"image_size": "IMAGE_SIZE", "augmented_views": 0, "learning_rate": 2e-4, "dims": DISTILLED_DIMS},
    "classify": {"epochs": 8, "image_size": 160, "augmented_views": 2, "learning_rate": 4e-4, "dims": 256},
}


@dataclass
class TrainingResult:
    config: dict
    head: object  # the trained keras head (the trained VGG16 blocks, pooling and projection)
    metrics: dict = field(default_factory=dict)


def _architecture(blocks: tuple[int, ...]) -> str:
    return "vgg16-adapted-block5" if blocks == (5,) else "vgg16-adapted-blocks" + "-".join(map(str, blocks))


# Distilling sees about this many training images in all (epochs x images), and at least
# DISTIL_MIN_EPOCHS epochs. Measured (docs/adapting.md): 2,721 grocery images plateau at 3 epochs
# (8k images seen); the demo's 486 went 0.543 / 0.593 / 0.617 held-out P@1 at 3 / 10 / 20 epochs.
# The training time is about the same for any shop below 2,700 images.
DISTIL_IMAGES_SEEN = 8000
DISTIL_MIN_EPOCHS = 3


def distil_epochs(images: int) -> int:
    """The default number of epochs to distil on ``images`` training images."""
    return max(DISTIL_MIN_EPOCHS, -(-DISTIL_IMAGES_SEEN // max(1, int(images))))


def network_config(options: TrainingOptions) -> dict:
    """The :mod:`visual_search.embeddings.adapted` config of the model these options train (what the fingerprint covers)."""
    blocks = trained_blocks({"trained_blocks": options.trained_blocks})
    return {
        "architecture": _architecture(blocks),
        "weights": str(settings.WEIGHTS),
        "seed": int(settings.RANDOM_SEED),
        "image_size": int(options.image_size),
        # A distilled network keeps its pooled channels: its vectors are the model in use's kind.
        "dims": int(options.dims),
        "gem_p": float(settings.GEM_P),
        "trained_blocks": list(blocks),
    }


def _decode(item: Item, size: int, views: int, rng: random.Random) -> list[np.ndarray] | None:
    """The clean input of ``item`` and ``views`` augmented ones; None for an unreadable image."""
    try:
        data = images.read_bytes(item.read(), int(settings.MAX_INDEX_BYTES))
        image = images.open_image(
            data, max_pixels=int(settings.MAX_PIXELS), allowed_formats=list(settings.ALLOWED_FORMATS), draft_size=size * 2
        )
    except Exception as exc:  # a bad image is left out of training, never fatal
        logger.warning("Training: image %s of %s left out: %s", item.object_id, item.registration, exc)
        return None
    return [images.fit_and_pad(image, size)] + [augment(image, size, rng) for _ in range(views)]


def trunk_features(
    trunk, items: Sequence[Item], *, size: int, views: int, seed: int, batch_size: int,
    progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The frozen trunk's maps of every item's views: (maps float16, item index per map, view number per map)."""
    rng = random.Random(seed)
    chunks = [list(range(i, min(i + batch_size, len(items)))) for i in range(0, len(items), batch_size)]
    maps, owners, view_ids = [], [], []

    def decode(chunk):
        # One RNG per chunk, drawn in order: the same seed gives the same views in any thread.
        chunk_rng = random.Random(rng.random())
        return [(n, _decode(items[n], size, views, chunk_rng)) for n in chunk]

    tf = runtime.tensorflow()
    # One traced graph for every batch size, as the extractor does: no per-op eager dispatch.
    forward = tf.function(
        lambda x: tf.cast(trunk(x, training=False), tf.float16),
        input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)], reduce_retracing=True,
    )
    done = 0
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="visual-search-train-decode") as pool:
        futures = [pool.submit(decode, chunk) for chunk in chunks[:2]]
        for k in range(len(chunks)):
            decoded = futures[k].result()
            if k + 2 < len(chunks):
                futures.append(pool.submit(decode, chunks[k + 2]))
            if should_stop and should_stop():
                raise Cancelled()
            batch, who, which = [], [], []
            for n, arrays in decoded:
                for v, array in enumerate(arrays or []):
                    batch.append(array)
                    who.append(n)
                    which.append(v)
            if batch:
                maps.append(forward(np.stack(batch).astype(np.float32)).numpy())
                owners += who
                view_ids += which
            done += len(chunks[k])
            if progress:
                progress("features", done, len(items))
    if not maps:
        raise ValueError("None of the images could be read.")
    return np.concatenate(maps), np.asarray(owners), np.asarray(view_ids)


def embed_maps(head, maps: np.ndarray, batch_size: int = 128) -> np.ndarray:
    return np.concatenate(
        [np.asarray(head(maps[i : i + batch_size].astype(np.float32), training=False)) for i in range(0, len(maps), batch_size)]
    )


def train(
    items: Sequence[Item],
    held_out: Sequence[Item],
    options: TrainingOptions,
    *,
    before: dict | None = None,
    targets: np.ndarray | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    after_epoch: Callable[[int, object], None] | None = None,
) -> TrainingResult:
    """Train on ``items``; measure on ``held_out`` (searched among ``items``) after training.

    ``before`` (figures of the current model on the same split, see :func:`evaluation.evaluate`)
    is stored beside the new figures. ``targets`` (distillation): the model in use's vectors of
    ``items``, one row each, NaN where an image has none; those images are left out of the loss.
    ``after_epoch(epoch, held_out_figures)`` is called after each epoch; calling
    ``held_out_figures()`` measures the held-out figures then (the benchmark's learning curve; it
    costs a forward pass of the clean maps).
    """
    keras = runtime.keras()
    started = time.monotonic()
    keras.utils.set_random_seed(int(options.seed))
    config = network_config(options)
    # Distilling without targets fails here, before minutes of feature maps.
    teacher = _Teacher.of(targets, items) if options.distil else None
    if teacher is not None and options.epochs is None:
        options = replace(options, epochs=distil_epochs(len(teacher.rows)))
    trunk, vgg16 = build_trunk(config, precision=str(settings.PRECISION))
    everything = list(items) + list(held_out)
    maps, owners, views = trunk_features(
        trunk, everything, size=options.image_size, views=options.augmented_views, seed=options.seed,
        batch_size=int(settings.BATCH_SIZE), progress=progress, should_stop=should_stop,
    )
    feature_seconds = time.monotonic() - started
    labels = _Labels.of(items, everything, owners)
    head = build_head(config, vgg16, precision=str(settings.PRECISION))
    if teacher is not None:
        labels.rows_of = {n: rows for n, rows in labels.rows_of.items() if n in teacher.rows}
        step = _distil_step(head, options, labels, teacher)
    else:
        step = _training_step(head, options, labels)
    clean = views == 0  # each image's own view, without augmentation
    held_out_figures = _held_out_measure(head, maps[clean], owners[clean], everything, len(items))
    agreement = {"before": teacher.agreement(embed_maps(head, maps[clean]), owners[clean])} if teacher is not None else None
    rng = np.random.default_rng(options.seed)
    losses = []
    for epoch in range(options.epochs):
        epoch_started = time.monotonic()
        losses.append(_epoch(step, maps, owners, labels, options, rng, epoch, progress, should_stop))
        logger.info("Training epoch %s/%s: loss %.4f", epoch + 1, options.epochs, losses[-1])
        if after_epoch is not None:
            after_epoch(epoch + 1, held_out_figures)
        now = time.monotonic()
        if options.time_limit and epoch + 1 < options.epochs and now - started + (now - epoch_started) > options.time_limit:
            logger.info("Training stops after %s: another would pass the time limit of %s s.",
                        "1 epoch" if epoch == 0 else f"{epoch + 1} epochs", options.time_limit)
            break
    train_seconds = time.monotonic() - started - feature_seconds
    if progress:
        progress("evaluating", 0, 1)
    # One view per image, as a trained version serves: the shop's test-time views, averaged through
    # the trained network, measured no better (val P@1 0.466 with four, 0.470 with one; docs/adapting.md).
    vectors = embed_maps(head, maps[clean])  # one forward pass for the held-out figures and the agreement
    after = held_out_figures(vectors=vectors, per_query=True)
    before = dict(before or {})
    # Paired on the same photos: is the change in P@1 more than the noise of that many photos?
    difference = evaluation.paired_difference(before.pop("first_right", None), after.pop("first_right", None))
    if agreement is not None:
        agreement["after"] = teacher.agreement(vectors, owners[clean])
    metrics = {
        "options": asdict(options),
        "training_images": int(len(items)),
        "held_out_images": int(len(held_out)),
        "products": len(labels.products),
        "categories": len(labels.categories),
        "feature_seconds": round(feature_seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "epochs_run": len(losses),
        "epoch_losses": losses,
        # What one photo costs: VGG16 passes (the views) at the input size, before and after.
        "passes": {"before": [len(settings.VIEWS), int(settings.IMAGE_SIZE)], "after": [1, int(options.image_size)]},
        "before": before,
        "after": after,
    }
    if difference is not None:
        metrics["difference"] = difference
    if agreement is not None:
        # Distilling: how close one pass comes to the model in use's vectors of the training images
        # (mean cosine, whitened as the loss sees them), before and after.
        metrics["agreement"] = agreement
    metrics["seconds"] = round(time.monotonic() - started, 1)
    if progress:
        progress("evaluating", 1, 1)
    return TrainingResult(config=config, head=head, metrics=metrics)


@dataclass
class _Labels:
    """What each cached map shows: its product and category index, and the maps of each training image."""

    products: list
    categories: list
    product_of: np.ndarray
    category_of: np.ndarray
    rows_of: dict[int, list[int]]

    @classmethod
    def of(cls, items: Sequence[Item], everything: Sequence[Item], owners: np.ndarray) -> _Labels:
        products = sorted({item.product for item in items})
        categories = sorted({item.category for item in items if item.category is not None})
        rows_of: dict[int, list[int]] = {}
        for row in np.flatnonzero(owners < len(items)):
            rows_of.setdefault(int(owners[row]), []).append(int(row))
        return cls(
            products,
            categories,
            np.array([products.index(item.product) if item.product in products else -1 for item in everything]),
            np.array([categories.index(item.category) if item.category in categories else -1 for item in everything]),
            rows_of,
        )

    @property
    def train_images(self) -> np.ndarray:
        return np.array(sorted(self.rows_of))

    def steps_per_epoch(self, batch_size: int) -> int:
        return -(-len(self.rows_of) // batch_size)


def _training_step(head, options: TrainingOptions, labels: _Labels) -> Callable:
    """One optimiser step on a batch of maps: CosFace over products, plus over categories if any."""
    keras, tf = runtime.keras(), runtime.tensorflow()
    n_products, n_categories = len(labels.products), len(labels.categories)
    classes = tf.Variable(tf.random.normal((options.dims, n_products), stddev=0.05, seed=options.seed), name="products")
    use_categories = n_categories > 1 and options.category_weight > 0
    kinds = tf.Variable(tf.random.normal((options.dims, max(1, n_categories)), stddev=0.05, seed=options.seed + 1), name="categories")
    conv_variables = [v for v in head.trainable_variables if "projection" not in v.path]
    head_variables = [v for v in head.trainable_variables if "projection" in v.path] + [classes, kinds]
    steps_per_epoch = labels.steps_per_epoch(options.batch_size)
    total_steps = steps_per_epoch * options.epochs
    conv_optimizer = keras.optimizers.Adam(_learning_rate(options, options.learning_rate, total_steps, steps_per_epoch))
    head_optimizer = keras.optimizers.Adam(_learning_rate(options, options.head_learning_rate, total_steps, steps_per_epoch))
    margin, scale = float(options.margin), 1.0 / float(options.temperature)

    def cosface(z, weights, labels, n):
        cosine = z @ tf.math.l2_normalize(weights, axis=0)
        logits = (cosine - margin * tf.one_hot(labels, n)) * scale
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))

    @tf.function(reduce_retracing=True)
    def step(x, y, c):
        with tf.GradientTape() as tape:
            z = head(x, training=True)
            loss = cosface(z, classes, y, n_products)
            if use_categories:
                loss += options.category_weight * cosface(z, kinds, c, n_categories)
        gradients = tape.gradient(loss, conv_variables + head_variables)
        conv_optimizer.apply_gradients(zip(gradients[: len(conv_variables)], conv_variables))
        head_optimizer.apply_gradients(zip(gradients[len(conv_variables) :], head_variables))
        return loss

    def run(x, owner):
        return step(tf.constant(x), tf.constant(labels.product_of[owner]), tf.constant(np.maximum(labels.category_of[owner], 0)))

    return run


@dataclass
class _Teacher:
    """What distillation aims at: each training image's vector from the model in use, whitened.

    The whitening (learned from the products, as the shop's) is fitted once on those vectors and
    applied to the student's vectors too, so the loss weighs the directions that tell products
    apart, not the mean every image shares.
    """

    rows: dict[int, int]  # training image -> its row in ``whitened``
    whitened: np.ndarray
    mean: np.ndarray
    projection: np.ndarray

    @classmethod
    def of(cls, targets: np.ndarray | None, items: Sequence[Item]) -> _Teacher:
        have = [] if targets is None else [n for n in range(len(items)) if np.all(np.isfinite(targets[n]))]
        products = {items[n].product for n in have}
        if len(products) < 2 or len(have) < 3:
            raise NotEnoughData(
                f"Distillation learns from the stored vectors of the model in use, and {len(have)} of the "
                f"{len(items)} training images have one. Run `manage.py visual_search_reindex` first, or "
                "train with the objective 'classify' (--objective classify)."
            )
        if targets.shape[1] != DISTILLED_DIMS:
            raise NotEnoughData(
                f"Distillation teaches the network the {DISTILLED_DIMS}-d vectors of VGG16's pooled channels, and the "
                f"model in use gives {targets.shape[1]}-d ones (a version trained with 'classify' is active). Roll "
                "back to the pretrained model first (`manage.py visual_search_versions rollback`), or train with "
                "the objective 'classify'."
            )
        vectors = l2_normalise(np.asarray(targets, dtype=np.float64)[have])
        dims = min(int(settings.WHITENING_DIMS or 128), len(have) - 1, vectors.shape[1])
        mean, projection = fit_whitening(vectors, dims, [items[n].product for n in have])
        return cls({n: k for k, n in enumerate(have)}, whiten(vectors, mean, projection), mean, projection)

    def agreement(self, vectors: np.ndarray, owners: np.ndarray) -> float:
        """The mean cosine between the network's whitened vectors (of the images ``owners`` names)
        and the targets, over the training images among them."""
        mine = [n for n, owner in enumerate(owners) if int(owner) in self.rows]
        vectors = whiten(vectors[mine], self.mean, self.projection)
        targets = self.whitened[[self.rows[int(owners[n])] for n in mine]]
        return round(float(np.mean(np.sum(vectors * targets, axis=1))), 4)


def _distil_step(head, options: TrainingOptions, labels: _Labels, teacher: _Teacher) -> Callable:
    """One optimiser step: the trained blocks learn to give, from one view, the whitened vector the
    model in use gives from all its views (cosine loss); the projection stays the identity."""
    keras, tf = runtime.keras(), runtime.tensorflow()
    projection = head.get_layer("projection")
    projection.set_weights([np.eye(DISTILLED_DIMS, dtype=np.float32)])
    projection.trainable = False
    variables = [v for v in head.trainable_variables if "projection" not in v.path]
    steps_per_epoch = labels.steps_per_epoch(options.batch_size)
    optimizer = keras.optimizers.Adam(_learning_rate(options, options.learning_rate, steps_per_epoch * options.epochs, steps_per_epoch))
    mean, whitening = tf.constant(teacher.mean), tf.constant(teacher.projection)

    @tf.function(reduce_retracing=True)
    def step(x, target):
        with tf.GradientTape() as tape:
            z = tf.math.l2_normalize(tf.matmul(head(x, training=True) - mean, whitening), axis=1)
            loss = tf.reduce_mean(1.0 - tf.reduce_sum(z * target, axis=1))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    def run(x, owner):
        rows = [teacher.rows[int(n)] for n in owner]
        return step(tf.constant(x), tf.constant(teacher.whitened[rows]))

    return run


def _epoch(step, maps, owners, labels: _Labels, options: TrainingOptions, rng, epoch: int, progress, should_stop) -> float:
    """One pass: each training image once, in one of its views drawn at random; returns the last loss."""
    steps_per_epoch = labels.steps_per_epoch(options.batch_size)
    total_steps = steps_per_epoch * options.epochs
    order = np.array([rng.choice(labels.rows_of[int(n)]) for n in rng.permutation(labels.train_images)])
    for k in range(steps_per_epoch):
        if should_stop and should_stop():
            raise Cancelled()
        rows = order[k * options.batch_size : (k + 1) * options.batch_size]
        loss = step(_flip_and_crop(maps[rows].astype(np.float32), rng), owners[rows])
        if progress:
            progress("training", epoch * steps_per_epoch + k + 1, total_steps)
    return round(float(loss), 4)


def _flip_and_crop(x: np.ndarray, rng) -> np.ndarray:
    """Augmentation of the cached maps themselves: a mirror half the time, and a random crop."""
    side = x.shape[1]
    if rng.random() < 0.5:
        x = x[:, :, ::-1]
    crop = int(rng.integers(max(1, side - 3), side + 1))
    top, left = rng.integers(0, side - crop + 1, size=2)
    return x[:, top : top + crop, left : left + crop]


def _held_out_measure(head, maps: np.ndarray, owners: np.ndarray, everything: Sequence[Item], n_training: int) -> Callable:
    """``held_out_figures(plain=False)``: the held-out images searched among the training images, with
    the head as it is when called; ``plain`` adds the figures of plain cosine (no whitening, no
    query expansion) under ``"plain"``. ``maps`` and ``owners``: each image's clean view."""
    gallery = owners < n_training

    def held_out_figures(plain: bool = False, vectors: np.ndarray | None = None, per_query: bool = False) -> dict:
        vectors = embed_maps(head, maps) if vectors is None else vectors
        args = (
            vectors[~gallery], [everything[n] for n in owners[~gallery]],
            vectors[gallery], [everything[n] for n in owners[gallery]],
        )
        figures = evaluate_vectors(*args, per_query=per_query)
        if plain:
            figures["plain"] = evaluate_vectors(*args, whitening_dims=None, expansion=0, prototype=0.0)
        return figures

    return held_out_figures


def _learning_rate(options: TrainingOptions, peak: float, total_steps: int, steps_per_epoch: int):
    keras = runtime.keras()
    if options.schedule == "constant":
        return float(peak)
    if options.schedule != "cosine":
        raise ValueError(f"schedule must be 'cosine' or 'constant', not {options.schedule!r}.")
    warmup = min(int(options.warmup_epochs * steps_per_epoch), max(0, total_steps - 1))
    return keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else float(peak), decay_steps=max(1, total_steps - warmup), warmup_target=float(peak) if warmup else None,
        warmup_steps=warmup,
    )


def evaluate_vectors(
    queries: np.ndarray, query_items: Sequence[Item], gallery: np.ndarray, gallery_items: Sequence[Item], **search
) -> dict:
    """:func:`evaluation.evaluate` with the shop's search settings (whitening, query expansion),
    or those in ``search`` (``whitening_dims``, ``expansion``). With ``per_query=True``,
    ``"first_right"`` maps each query item to whether its first product was right (what
    :func:`evaluation.paired_difference` pairs)."""
    with_categories = all(i.category is not None for i in list(query_items) + list(gallery_items))
    figures = evaluation.evaluate(
        queries,
        [i.product for i in query_items],
        gallery,
        [i.product for i in gallery_items],
        [i.category for i in query_items] if with_categories else None,
        [i.category for i in gallery_items] if with_categories else None,
        **{
            "whitening_dims": int(settings.WHITENING_DIMS) if settings.WHITENING else None,
            "expansion": int(settings.QUERY_EXPANSION or 0),
            "alpha": float(settings.QUERY_EXPANSION_ALPHA),
            "learned": settings.WHITENING == "learned",
            "prototype": float(settings.PROTOTYPE_WEIGHT),
            **search,
        },
    )
    if "first_right" in figures:
        figures["first_right"] = dict(zip(query_items, figures["first_right"]))
    return figures
