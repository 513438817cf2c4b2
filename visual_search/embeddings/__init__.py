"""Image bytes to vectors: decoding (``images``), the VGG16 backbone (``backbone``), pooling
(``pooling``), the fingerprint that says which vectors are comparable (``fingerprint``) and the
batched, per-process ``Extractor`` that ties them together (``extractor``)."""
