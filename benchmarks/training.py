"""Adapting the model to the shop (visual_search.training) on the grocery photos: before, after, time.

The shop's product images are the ``train`` photos plus the 81 catalogue images; the held-out
queries are the ``val`` photos, searched among those, products ranked as a search ranks them
(learned whitening, prototypes). "Before" is the pretrained default (block-4 GeM at IMAGE_SIZE,
its test-time views averaged) on the same split, from the quality suite's feature cache; "after"
is the trained version (one view per image, as it serves), measured the same way by the trainer.
Distilling (the default objective), the training images' "before" vectors are the targets.
"""

from __future__ import annotations

import time

import numpy as np

from .common import dataset
from .features import images, view_vectors


def run(
    epochs: int | None = None, views: int | None = None, image_size: int | None = None, time_limit: float | None = None,
    trained_blocks: list[int] | None = None, curve: bool = False, **overrides,
) -> dict:
    from django.conf import settings as django_settings

    from visual_search.conf import settings
    from visual_search.training.dataset import Item
    from visual_search.training.trainer import TrainingOptions, evaluate_vectors, train

    rows = images()
    root = dataset()

    def reader(path):
        return lambda: (root / path).read_bytes()

    items = [Item(None, r["file"], r["product"], r["category"], reader(r["file"])) for r in rows]
    held = [item for item, r in zip(items, rows) if r["split"] == "val"]
    training = [item for item, r in zip(items, rows) if r["split"] != "val"]

    from visual_search.embeddings import views as view_names
    from visual_search.embeddings.pooling import l2_normalise

    # What the shop serves before training: the pretrained network, its views averaged.
    served = [view_names.VIEWS.index(v) for v in settings.VIEWS]
    features = l2_normalise(view_vectors()[:, served].mean(axis=1))
    is_val = np.array([r["split"] == "val" for r in rows])
    # per_query: each val photo's first product right or not, paired with the trained model's (the noise).
    before = evaluate_vectors(features[is_val], held, features[~is_val], training, per_query=True)
    before["model"] = f"pretrained, {len(served)} views at {settings.IMAGE_SIZE}px"
    options = TrainingOptions.from_settings(
        epochs=epochs, augmented_views=views, image_size=image_size, time_limit=time_limit, trained_blocks=trained_blocks, **overrides
    )
    print(f"Training on {len(training)} images, {len(held)} held-out queries, options {options}", flush=True)
    last = {"stage": None, "t": time.monotonic()}

    def progress(stage, done, total):
        now = time.monotonic()
        if stage != last["stage"] or now - last["t"] > 30 or done == total:
            last.update(stage=stage, t=now)
            print(f"  {stage}: {done}/{total}", flush=True)

    learning_curve = {}

    def after_epoch(epoch, held_out_figures):
        # The val photos searched among the training images after each epoch (one forward pass of the clean maps).
        figures = held_out_figures(plain=True)
        learning_curve[epoch] = {"p_at_1": figures["p_at_1"], "plain_p_at_1": figures["plain"]["p_at_1"], "s": round(time.monotonic() - started)}
        print(f"  epoch {epoch}: val P@1 {figures['p_at_1']:.3f}, P@10 {figures['p_at_10']:.3f} "
              f"(plain cosine: P@1 {figures['plain']['p_at_1']:.3f}) at {time.monotonic() - started:.0f} s", flush=True)

    started = time.monotonic()
    # Distillation's targets: the pretrained default's vectors of the training images (a shop's stored ones).
    targets = features[~is_val] if options.distil else None
    result = train(training, held, options, before=before, targets=targets, progress=progress, after_epoch=after_epoch if curve else None)
    m = result.metrics
    return {
        "weights": django_settings.VISUAL_SEARCH["WEIGHTS"],
        "options": m["options"],
        "training_images": m["training_images"],
        "held_out_images": m["held_out_images"],
        "training.before.p_at_1": before["p_at_1"],
        "training.before.hit_at_5": before["hit_at_5"],
        "training.after.hit_at_5": m["after"]["hit_at_5"],
        "training.before.p_at_10": before["p_at_10"],
        "training.before.category_p_at_1": before.get("category_p_at_1"),
        "training.after.p_at_1": m["after"]["p_at_1"],
        "training.after.p_at_10": m["after"]["p_at_10"],
        "training.after.category_p_at_1": m["after"].get("category_p_at_1"),
        "training.feature_s": m["feature_seconds"],
        "training.train_s": m["train_seconds"],
        "training.total_s": m["seconds"],
        "training.epochs_run": m["epochs_run"],
        "training.epoch_losses": m["epoch_losses"],
        "training.passes": m["passes"],
        **({"training.agreement": m["agreement"]} if "agreement" in m else {}),
        **({"training.difference": m["difference"]} if "difference" in m else {}),
        **({"training.curve_p_at_1": learning_curve} if curve else {}),
    }
