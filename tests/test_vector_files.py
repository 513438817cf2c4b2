"""``visual_search_reindex --vectors FILE``: vectors computed elsewhere (a ``dumpdata`` made where the
network runs fast) are taken by the bytes of each image, whatever its key; the rest is computed here
(docs/deployment.md, "Vectors computed elsewhere")."""

import base64
import gzip
import io
import json
import lzma

import numpy as np
import pytest
from django.core.management import CommandError, call_command

import visual_search
from visual_search import vector_files
from visual_search.models import ImageEmbedding, Whitening
from visual_search.reindex import reindex
from visual_search.serving import current_fingerprint
from tests.conftest import catalogue_image, photos
from tests.testapp.models import Product

pytestmark = pytest.mark.django_db(transaction=True)
NAMES = ["Lemon", "Banana", "Kiwi", "Lime", "Red-Delicious", "Oatly-Oat-Milk"]
DUMP = ["visual_search.ImageEmbedding", "visual_search.Whitening"]


@pytest.fixture
def tuned(settings):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "WHITENING": "pca", "WHITENING_MIN_VECTORS": 12, "WHITENING_DIMS": 8}


def images() -> list[tuple[str, bytes]]:
    found = []
    for name in NAMES:
        found.append((name, catalogue_image(name).read_bytes()))
        found.append((f"{name} photo", photos()[name][0].read_bytes()))
    return found


def load(make_product, pictures) -> list[Product]:
    with visual_search.pause_indexing(reindex_on_exit=False):
        return [make_product(name, data) for name, data in pictures]


@pytest.fixture
def vector_file(make_product, tuned, tmp_path):
    """The catalogue indexed "elsewhere", dumped, then gone: a shop that has the same photos but not
    yet their vectors, under other keys (created in another order)."""
    load(make_product, images())
    reindex(Product, asynchronous=False)
    query = photos()["Lemon"][3].read_bytes()
    before = results(query)
    path = tmp_path / "vectors.json.xz"
    call_command("dumpdata", *DUMP, natural_foreign=True, natural_primary=True, output=str(path), verbosity=0)
    with visual_search.pause_indexing(reindex_on_exit=False):
        Product.objects.all().delete()
    ImageEmbedding.objects.all().delete()
    Whitening.objects.all().delete()
    return path, query, before


def results(query: bytes) -> list[tuple[str, float]]:
    return [(r.object.name, round(r.score, 4)) for r in visual_search.search_by_image(query, Product, limit=5)]


def run(*args) -> str:
    out = io.StringIO()
    call_command("visual_search_reindex", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_a_shop_takes_the_vectors_and_whitening_by_the_bytes_of_its_images(vector_file, make_product, embed_calls):
    path, query, before = vector_file
    shop = load(make_product, list(reversed(images())))  # the same photos under other keys
    assert min(p.pk for p in shop) > 12
    out = run("--vectors", str(path))
    assert "Embedded 12, unchanged 0, failed 0" in out
    assert f"12 took their vector from {path} and 0 went through the network here; 1 whitening taken" in out, out
    assert embed_calls == []  # no image went through the network; no fit either
    assert ImageEmbedding.objects.filter(status="ready").count() == 12
    assert results(query) == before  # found through the index as usual
    assert "Nothing to index" in run("--vectors", str(path), "--only", "missing,stale")


def test_a_changed_image_is_computed_here_and_the_whitening_learned_here_when_most_are(vector_file, make_product, embed_calls):
    path, _, _ = vector_file
    pictures = images()
    pictures[0] = (pictures[0][0], photos()["Lemon"][5].read_bytes())  # not the bytes the file has a vector for
    load(make_product, pictures)
    out = run("--vectors", str(path))
    assert "11 took their vector" in out and "1 went through the network here" in out, out
    assert len(embed_calls) == 1  # that image's views, in one pass
    assert Whitening.objects.get().trained_on == 12

    # A catalogue that grew well past the file's: its whitening is learned here, from all of it.
    more = [(f"{name} photo {k}", photos()[name][k].read_bytes()) for name in NAMES for k in (1, 2)]
    ImageEmbedding.objects.all().delete()
    Whitening.objects.all().delete()
    load(make_product, more)
    out = run("--vectors", str(path))
    assert "11 took their vector" in out and "0 whitenings taken" in out, out
    assert Whitening.objects.get().trained_on == 24


def test_vectors_of_another_model_version_are_not_taken(vector_file, make_product, settings, embed_calls):
    path, _, _ = vector_file
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "IMAGE_SIZE": 48}
    load(make_product, images())
    out = run("--vectors", str(path))
    assert "holds 12 vectors of model version" in out and "none of this shop's" in out and "every image is computed here" in out, out
    assert "0 took their vector" in out and "12 went through the network here" in out
    assert embed_calls and list(Whitening.objects.values_list("fingerprint", flat=True)) == [current_fingerprint()]  # its own


def test_an_image_this_shop_refuses_is_refused_even_with_a_vector(vector_file, make_product, settings):
    path, _, _ = vector_file
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ALLOWED_FORMATS": ["PNG"]}  # the file's JPEGs
    load(make_product, images()[:2])
    out = run("--vectors", str(path))
    assert "Embedded 0, unchanged 0, failed 2" in out, out
    assert set(ImageEmbedding.objects.values_list("status", flat=True)) == {"failed"}


def test_a_dump_is_read_a_piece_at_a_time_as_a_json_list_or_one_row_a_line(vector_file, make_product, monkeypatch, tmp_path, embed_calls):
    path, query, before = vector_file
    whole = vector_files.VectorFile(path)
    rows = json.loads(lzma.decompress(path.read_bytes()))
    written = {
        "vectors.jsonl.gz": gzip.compress("".join(json.dumps(row) + "\n" for row in rows).encode()),  # dumpdata --format jsonl
        "vectors.json": json.dumps(rows, indent=2).encode(),  # dumpdata --indent 2
    }
    monkeypatch.setattr(vector_files, "CHUNK", 100)  # every row (about 3,000 characters) spans pieces
    for name, content in written.items():
        (tmp_path / name).write_bytes(content)
        read = vector_files.VectorFile(tmp_path / name)
        assert read.vectors.keys() == whole.vectors.keys() and len(read) == 12, name
        assert all((read.vectors[key] == whole.vectors[key]).all() for key in whole.vectors)
        assert read.whitenings == whole.whitenings and read.fingerprints == whole.fingerprints == [current_fingerprint()]

    # Only the versions asked for are kept; the others are counted.
    other = vector_files.VectorFile(tmp_path / "vectors.json", fingerprints={"another version"})
    assert len(other) == 0 and other.found == {current_fingerprint(): 12}

    # A file cut short says so, and nothing is indexed from it.
    (tmp_path / "cut.json").write_bytes(written["vectors.json"][:-2000])  # into its last row, the whitening
    load(make_product, images())
    with pytest.raises(CommandError, match=r"Cannot read .*cut.json \(the file ends in the middle of row 13: was it copied whole\?\)"):
        run("--vectors", str(tmp_path / "cut.json"))
    assert not ImageEmbedding.objects.filter(status="ready").exists()

    out = run("--vectors", str(tmp_path / "vectors.jsonl.gz"))
    assert "12 took their vector" in out and "1 whitening taken" in out, out
    assert embed_calls == [] and results(query) == before


@pytest.mark.parametrize(
    "damage",
    [
        {"mean": "short"},  # a mean of another length than the model's vectors: every search would fail
        {"projection": "nan"},
        {"calibration": {"temperature": 0, "none": 0.3}},
        {"calibration": {"temperature": "hot", "none": 0.3}},
        {"calibration": {"temperature": 0.05, "none": 0.3, "prior": "half"}},
    ],
)
def test_a_damaged_file_s_vectors_and_whitening_are_not_taken(vector_file, make_product, tmp_path, damage, embed_calls):
    path, query, _ = vector_file
    rows = json.loads(lzma.decompress(path.read_bytes()))
    embeddings = [row for row in rows if row["model"] == "visual_search.imageembedding"]
    whitening = next(row["fields"] for row in rows if row["model"] == "visual_search.whitening")
    nan, doubled = np.frombuffer(base64.b64decode(embeddings[0]["fields"]["vector"]), np.float32).copy(), None
    nan[3] = np.nan
    doubled = 2 * np.frombuffer(base64.b64decode(embeddings[1]["fields"]["vector"]), np.float32)
    embeddings[0]["fields"]["vector"] = base64.b64encode(nan.tobytes()).decode()
    embeddings[1]["fields"]["vector"] = base64.b64encode(doubled.tobytes()).decode()
    for field, value in damage.items():
        if value == "short":
            value = base64.b64encode(base64.b64decode(whitening["mean"])[:-4]).decode()
        elif value == "nan":
            projection = np.frombuffer(base64.b64decode(whitening["projection"]), np.float32).copy()
            projection[7] = np.inf
            value = base64.b64encode(projection.tobytes()).decode()
        whitening[field] = value
    damaged = tmp_path / "damaged.json"
    damaged.write_text(json.dumps(rows))
    load(make_product, images())

    out, err = io.StringIO(), io.StringIO()
    call_command("visual_search_reindex", "--vectors", str(damaged), stdout=out, stderr=err)
    assert "2 vectors of this model version are not unit vectors of finite numbers (a damaged file?)" in err.getvalue()
    assert "10 took their vector" in out.getvalue() and "2 went through the network here" in out.getvalue()
    assert "0 whitenings taken" in out.getvalue(), out.getvalue()
    vectors = [np.frombuffer(bytes(v), np.float32) for v in ImageEmbedding.objects.values_list("vector", flat=True)]
    assert len(vectors) == 12 and all(np.isfinite(v).all() and abs(np.linalg.norm(v) - 1) < 1e-3 for v in vectors)
    assert Whitening.objects.get().trained_on == 12  # learned here, from all twelve
    found = results(query)
    assert found and all(0 <= score <= 1 for _, score in found)


@pytest.mark.parametrize(
    "content, says",
    [
        (b"not json", "Cannot read .*row 1 is not JSON"),
        (b'[{"model": "visual_search.whitening", "fields": {}}, {oops}]', "Cannot read .*row 2 is not JSON"),
        (b'{"model": "visual_search.imageembedding"}', "not a dumpdata fixture"),
        (lzma.compress(b"[1, 2]"), "not a dumpdata fixture"),
    ],
)
def test_a_file_that_is_no_dump_is_refused_saying_how_to_make_one(make_product, tmp_path, content, says):
    load(make_product, images()[:1])
    path = tmp_path / ("vectors.json.xz" if content.startswith(b"\xfd7zXZ") else "vectors.json")
    path.write_bytes(content)
    with pytest.raises(CommandError, match=f"{says}.*dumpdata visual_search.ImageEmbedding visual_search.Whitening"):
        run("--vectors", str(path))
    with pytest.raises(CommandError, match="No file"):
        run("--vectors", str(tmp_path / "missing.json"))
    assert not ImageEmbedding.objects.filter(status="ready").exists()


def test_vectors_are_not_sent_to_celery(make_product, tmp_path):
    with pytest.raises(CommandError, match="without --async"):
        run("--vectors", str(tmp_path / "vectors.json"), "--async")
