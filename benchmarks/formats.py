"""What a customer's photo costs the server to decode, by format: python -m benchmarks.formats [--photos 10]

``--photos`` val photos made phone-sized (4032 x 3024, 12 megapixels, with sensor noise so they
compress like camera photos), each saved as a camera saves it (JPEG quality 90, HEIC quality 80:
an iPhone's) and as the widget sends it (a JPEG of 2048 px, quality 90). It prints the file size
and the p50 of ``serving.decode_upload`` (read, header checks, decode, EXIF rotation: what runs
before the network), over the photos, three times each. The widget sends 2048 px JPEGs where the
browser can draw the photo; an HEIC outside Safari goes as it is (docs/customers.md). Prints only.
Measure on a quiet machine.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time

PHONE = (4032, 3024)


def camera_photos(count: int) -> list:
    """``count`` val photos at a phone camera's size, with noise."""
    import numpy as np
    from PIL import Image

    from .common import dataset, photo_rows

    rng = np.random.default_rng(0)
    val = photo_rows("val")
    rows = val[:: max(1, len(val) // count)][:count]
    photos = []
    for row in rows:
        big = np.asarray(Image.open(dataset() / row["file"]).convert("RGB").resize(PHONE, Image.Resampling.BICUBIC)).astype(np.int16)
        noisy = np.clip(big + rng.integers(-8, 9, size=big.shape, dtype=np.int16), 0, 255).astype(np.uint8)
        photos.append(Image.fromarray(noisy))
    return photos


def encodings(photo) -> dict[str, bytes]:
    import pillow_heif

    def save(image, fmt, **options) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        return buffer.getvalue()

    heic = io.BytesIO()
    pillow_heif.from_pillow(photo).save(heic, quality=80)
    small = photo.copy()
    small.thumbnail((2048, 2048))
    return {
        "JPEG, 12 MP (camera)": save(photo, "JPEG", quality=90),
        "HEIC, 12 MP (iPhone)": heic.getvalue(),
        "JPEG, 2048 px (the widget's)": save(small, "JPEG", quality=90),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.formats", description=__doc__)
    parser.add_argument("--photos", type=int, default=10)
    args = parser.parse_args()

    from .common import machine, setup_django

    setup_django()
    from visual_search.serving import decode_upload

    print(f"Machine: {json.dumps(machine())}")
    files: dict[str, list[bytes]] = {}
    for photo in camera_photos(args.photos):
        for name, data in encodings(photo).items():
            files.setdefault(name, []).append(data)
    print(f"{'file':32} {'size (MB, median)':>18} {'decode p50 (ms)':>16}")
    for name, datas in files.items():
        decode_upload(datas[0])  # warm: the codec's first call loads what it needs
        times = []
        for _ in range(3):
            for data in datas:
                started = time.perf_counter()
                decode_upload(data)
                times.append(time.perf_counter() - started)
        size = statistics.median(len(d) for d in datas) / 1e6
        print(f"{name:32} {size:18.2f} {statistics.median(times) * 1000:16.1f}")


if __name__ == "__main__":
    main()
