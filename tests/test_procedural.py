"""Procedural pictures (dead leaves, 1/f noise, fractals) and the `procedural` query source."""

import itertools

import numpy as np
import pytest

from copycat_tf.queries import open_query_source, procedural
from copycat_tf.queries.procedural import (
    KINDS,
    ProceduralView,
    bank_names,
    bank_picture,
    bank_view,
    dead_leaves,
    fractal,
    spectral,
    spectral_field,
)

GENERATORS = (dead_leaves, spectral, fractal)


@pytest.mark.parametrize("generator", GENERATORS, ids=lambda g: g.__name__)
def test_generators_are_deterministic_per_seed(generator):
    image = generator(np.random.default_rng(11), (40, 56))
    assert image.shape == (40, 56, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, generator(np.random.default_rng(11), (40, 56)))
    assert not np.array_equal(image, generator(np.random.default_rng(12), (40, 56)))
    assert image.std() > 5  # a picture, not a flat colour


def test_spectral_field_has_the_asked_power_law():
    """The radially averaged power falls as f^(-2 alpha): natural photos have alpha near 1."""
    for alpha in (1.0, 2.0):
        field = spectral_field(np.random.default_rng(0), (128, 128), alpha)
        power = np.abs(np.fft.fft2(field - field.mean())) ** 2
        fy, fx = np.meshgrid(np.fft.fftfreq(128), np.fft.fftfreq(128), indexing="ij")
        radius = np.hypot(fx, fy)
        bands = np.geomspace(0.02, 0.4, 9)
        mean_power = [power[(radius >= lo) & (radius < hi)].mean() for lo, hi in itertools.pairwise(bands)]
        centres = np.sqrt(bands[:-1] * bands[1:])
        slope = np.polyfit(np.log(centres), np.log(mean_power), 1)[0]
        assert slope == pytest.approx(-2 * alpha, abs=0.3)


def test_dead_leaves_are_many_occluding_shapes():
    image = dead_leaves(np.random.default_rng(5), (64, 64))
    colours = {tuple(c) for c in image.reshape(-1, 3)}
    assert len(colours) > 20


def test_views_and_the_bank_are_fixed():
    view = ProceduralView.draw(np.random.default_rng(3))
    assert view.kind in KINDS and view == ProceduralView.draw(np.random.default_rng(3))
    np.testing.assert_array_equal(view.render((24, 24)), view.render((24, 24)))
    names = bank_names()
    assert len(names) == procedural.BANK_SIZE == len(set(names))
    assert {bank_view(i).kind for i in range(procedural.BANK_SIZE)} == set(KINDS)
    picture = bank_picture(0)
    assert picture.mode == "RGB" and picture.size == procedural.CANVAS[::-1]
    np.testing.assert_array_equal(np.asarray(picture), bank_view(0).render(procedural.CANVAS))


def _queries(source, count, start=0):
    stream = source.queries(start)
    try:
        return [next(stream) for _ in range(count)]
    finally:
        stream.close()


def test_the_procedural_source_crops_the_bank_deterministically():
    queries = _queries(open_query_source("procedural", (20, 20, 3), seed=4), 200)
    assert all(q.key.startswith("procedural/") for q in queries)
    assert len({q.key.split("@")[0] for q in queries}) > 60  # many bank pictures
    assert len({q.image.tobytes() for q in queries}) == 200
    assert all(q.image.shape == (20, 20, 3) and q.image.dtype == np.uint8 for q in queries)
    again = _queries(open_query_source("procedural", (20, 20, 3), seed=4), 200)
    assert [q.key for q in again] == [q.key for q in queries]
    np.testing.assert_array_equal(np.stack([q.image for q in again]), np.stack([q.image for q in queries]))
    assert [q.key for q in _queries(open_query_source("procedural", (20, 20, 3), seed=5), 200)] != [
        q.key for q in queries]
    gray = _queries(open_query_source("procedural", (12, 16, 1), seed=4), 20)
    assert all(q.image.shape == (12, 16, 1) for q in gray)


def test_procedural_mixes_with_photos_by_weight_and_resumes():
    specs = ["photos", "procedural:0.3"]
    whole = _queries(open_query_source(specs, (16, 16, 3), seed=2), 300)
    drawn = sum(q.key.startswith("procedural/") for q in whole)
    assert abs(drawn / 300 - 0.3) < 0.1
    assert {q.source for q in whole} == {0, 1}
    resumed = _queries(open_query_source(specs, (16, 16, 3), seed=2), 100, start=200)
    assert [q.position for q in resumed] == list(range(200, 300))
    assert [q.key for q in resumed] == [q.key for q in whole[200:]]
    np.testing.assert_array_equal(np.stack([q.image for q in resumed]), np.stack([q.image for q in whole[200:]]))


def test_the_fingerprint_names_the_bank(monkeypatch):
    def fingerprint():
        return open_query_source("procedural", (8, 8, 3)).config()["sources"][0]["fingerprint"]

    first = fingerprint()
    assert first == fingerprint() and f"v{procedural.VERSION}" in first
    monkeypatch.setattr(procedural, "VERSION", procedural.VERSION + 1)
    assert fingerprint() != first
