"""Adapting the embedding to the shop's own catalogue: metric learning on its product images.

A shop knows which images show the same product and which products share a category. Training
turns that into an embedding fine-tuned for its catalogue:

- the network it trains is :mod:`visual_search.embeddings.adapted` (serving runs it too): VGG16's
  frozen first blocks, a fine-tuned copy of block 4 (by default), GeM pooling and a projection
  head, L2-normalised.
- :mod:`.dataset`: the labelled images of a registered model, and the held-out split.
- :mod:`.trainer`: caches what the frozen blocks compute once, trains block 4 and the head with
  a normalised-softmax (CosFace) loss over products plus one over categories, with augmentation,
  and saves a :class:`~visual_search.models.ModelVersion`.
- :mod:`.evaluation`: precision@1 / @10 by product and by category on the held-out images.

Switching the shop to a trained version (and back) is :mod:`visual_search.versions`.
"""

from .jobs import start_training

__all__ = ["start_training"]
