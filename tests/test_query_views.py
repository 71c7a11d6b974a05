"""The ``views:DIR`` source: endless seeded crops and flips of a folder's images."""

import itertools
import logging
import threading

import numpy as np
import pytest
from cli_runner import run_cli
from PIL import Image
from test_fakeset import Interrupt, assert_same_records

from copycat_tf.errors import CopycatError
from copycat_tf.execution import Execution
from copycat_tf.fakeset import FakeSet, label
from copycat_tf.images import ImageFitter
from copycat_tf.oracle import OnnxOracle
from copycat_tf.queries import SourceSpec, open_query_source
from copycat_tf.queries.views import FolderViewSource, PictureCache


def views(folder, count, shape=(16, 16, 3), seed=0, start=0):
    stream = open_query_source(f"views:{folder}", shape, seed=seed).queries(start)
    try:
        return list(itertools.islice(stream, count))
    finally:
        stream.close()


def test_views_are_seeded(query_folder):
    folder, _ = query_folder
    first, again, other = views(folder, 40), views(folder, 40), views(folder, 40, seed=1)
    assert [q.key for q in first] == [q.key for q in again]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.image, b.image)
    assert [q.key for q in first] != [q.key for q in other]


def test_views_are_endless_distinct_and_cover_the_folder(query_folder):
    folder, keys = query_folder
    queries = views(folder, 10 * len(keys))
    assert len(queries) == 10 * len(keys) and all(q.rejection is None for q in queries)
    assert len({q.key for q in queries}) == len(queries)
    assert len({q.image.tobytes() for q in queries}) == len(queries)
    assert {q.key.split("@")[0] for q in queries} == set(keys)
    assert all(q.image.shape == (16, 16, 3) and q.image.dtype == np.uint8 for q in queries)


def test_a_resumed_stream_is_the_tail_of_the_whole_one(query_folder):
    folder, _ = query_folder
    whole, tail = views(folder, 50), views(folder, 30, start=20)
    assert [q.position for q in tail] == list(range(20, 50))
    assert [q.key for q in tail] == [q.key for q in whole[20:]]
    for a, b in zip(tail, whole[20:]):
        np.testing.assert_array_equal(a.image, b.image)


def test_each_view_is_one_query_and_an_interrupted_run_buys_nothing_twice(query_target, query_folder, tmp_path):
    folder, keys = query_folder
    specs = [f"views:{folder}"]
    target = query_target()
    budget = 5 * len(keys)  # more queries than the folder has images
    whole = label(OnnxOracle(target), specs, budget, tmp_path / "whole", shard_size=16, batch_size=4)
    assert whole.count == budget and whole.complete and not whole.exhausted
    assert whole.queries_spent == budget
    out = tmp_path / "resumed"
    first, second = OnnxOracle(target), OnnxOracle(target)
    with pytest.raises(KeyboardInterrupt):
        label(first, specs, budget, out, shard_size=16, batch_size=4,
              execution=Execution(label_progress=Interrupt(10)))
    assert 0 < FakeSet.open(out).count < budget
    resumed = label(second, specs, budget, out, shard_size=16, batch_size=4)
    assert_same_records(whole, resumed)
    assert resumed.queries_spent == budget and resumed.summary()["rebought"] == 0
    assert first.queries_spent + second.queries_spent == budget
    assert all("@" in key for key in np.concatenate([s["keys"] for s in resumed.iter_shards()]))


def test_a_changed_folder_is_refused_on_resume(query_target, query_folder, tmp_path):
    folder, _ = query_folder
    out = tmp_path / "fake"
    label(OnnxOracle(query_target()), f"views:{folder}", 8, out, shard_size=4)
    Image.new("RGB", (41, 30)).save(folder / "a.jpg")  # same name, another size
    with pytest.raises(CopycatError, match="contents of query source"):
        label(OnnxOracle(query_target()), f"views:{folder}", 16, out, shard_size=4)


def test_unreadable_files_are_skipped_with_one_warning(query_folder, bad_query_files, caplog):
    folder, keys = query_folder
    bad_query_files(folder)
    with caplog.at_level(logging.WARNING, logger="copycat_tf.queries.views"):
        queries = views(folder, 200)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # empty, not an image, a bomb, a broken link and a corrupt PNG fail at the header: never drawn
    assert len(warnings) == 1 and "skipping 5 image file(s) that cannot be read" in warnings[0]
    drawn = {q.key.split("@")[0] for q in queries}
    assert drawn == set(keys) | {"truncated.jpg"}
    # a good header over bad data is found when a view is decoded: rejected, never sent
    rejected = {q.key.split("@")[0] for q in queries if q.rejection is not None}
    assert rejected == {"truncated.jpg"}
    assert all("corrupt or truncated" in q.rejection for q in queries if q.rejection is not None)


def test_a_folder_without_a_readable_image_is_an_error(tmp_path):
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "notes.txt").write_text("not an image\n")
    (folder / "fake.jpg").write_text("not a JPEG either\n")
    with pytest.raises(CopycatError, match=r"no readable image among its 2 file\(s\) \(e.g. fake.jpg: not a recog"):
        open_query_source(f"views:{folder}", (8, 8, 3))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CopycatError, match="has no files"):
        open_query_source(f"views:{tmp_path / 'empty'}", (8, 8, 3))
    with pytest.raises(CopycatError, match="does not exist; views: takes a folder"):
        open_query_source(f"views:{tmp_path / 'missing'}", (8, 8, 3))


def test_the_spec_takes_a_weight_and_mixes(query_folder, tmp_path):
    folder, _ = query_folder
    assert SourceSpec.parse(f"views:{folder}:0.25") == SourceSpec(f"views:{folder}", 0.25)
    assert SourceSpec.parse(f"views:{folder}") == SourceSpec(f"views:{folder}", None)
    numbered = tmp_path / "2024"
    numbered.mkdir()
    Image.new("RGB", (20, 20), (1, 2, 3)).save(numbered / "x.png")
    assert SourceSpec.parse(f"views:{numbered}:0.5").text == f"views:{numbered}"
    source = open_query_source([f"views:{folder}:0.25", "noise:uniform"], (8, 8, 3), seed=0)
    assert [s["kind"] for s in source.config()["sources"]] == ["views", "noise:uniform"]
    assert source.weights == [0.25, 0.75] and source.size is None and source.folders == [folder]
    picks = [q.source for q in itertools.islice(source.queries(), 400)]
    assert 0.15 < picks.count(0) / len(picks) < 0.35


def test_a_plain_folder_that_runs_out_suggests_views(query_target, query_folder, tmp_path, caplog):
    folder, keys = query_folder
    with caplog.at_level(logging.WARNING, logger="copycat_tf.fakeset.query_loop"):
        fakeset = label(OnnxOracle(query_target()), str(folder), 3 * len(keys), tmp_path / "fake")
    assert fakeset.exhausted and fakeset.count == len(keys)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"query sources used up after {len(keys)} of {3 * len(keys)} records: a folder sends "
                        f"each image once; --queries views:{folder} sends endless seeded crops and flips of "
                        "its images"]
    assert open_query_source(f"views:{folder}", (8, 8, 3)).used_up_hint() is None


def test_large_pictures_are_decoded_reduced_and_cut_at_the_same_place(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "big"
    folder.mkdir()
    pixels = np.kron(rng.integers(0, 256, (30, 40, 3)), np.ones((50, 50, 1))).astype(np.uint8)
    Image.fromarray(pixels).save(folder / "big.jpg", quality=95)  # 2000x1500, blocks of 50 px
    fitter = ImageFitter((8, 8, 3))
    source = FolderViewSource(folder, fitter, seed=0, position=0)
    assert source.sizes == [(2000, 1500)]
    whole = fitter.picture(str(folder / "big.jpg"))
    errors = []
    for _, view in itertools.islice(source.items(), 40):
        left, top, right, bottom = view.box
        assert 0 <= left < right <= 2000 and 0 <= top < bottom <= 1500
        reduced = source.materialize(view, fitter).astype(int)
        errors.append(np.abs(reduced - fitter.fit(view.render(whole)).astype(int)).mean())
    # resampling differs a little; a box cut a block (50 px) off would differ by ~80 grey levels
    assert np.mean(errors) < 4 and max(errors) < 25
    assert source.cache.get(0).size == (128, 96)  # short side: 12 x the target's side


def test_an_exif_rotated_photo_is_sized_upright(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned by 90 degrees
    Image.new("RGB", (60, 20), (9, 9, 9)).save(tmp_path / "turned.jpg", exif=exif)
    fitter = ImageFitter((8, 8, 1))
    assert fitter.picture_size(str(tmp_path / "turned.jpg")) == (20, 60)
    assert fitter.picture(str(tmp_path / "turned.jpg")).size == (20, 60)


def test_the_cache_decodes_a_picture_once_for_threads_asking_together():
    loads, started = [], threading.Event()

    def load(index):
        loads.append(index)
        started.wait(1)
        return Image.new("L", (10, 10), index)

    cache = PictureCache(load, max_bytes=10_000)
    threads = [threading.Thread(target=cache.get, args=(3,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    started.set()
    for thread in threads:
        thread.join()
    assert loads == [3] and cache.get(3).getpixel((0, 0)) == 3


def test_label_through_the_cli_spends_a_small_folder_as_views(query_target, query_folder, tmp_path):
    folder, keys = query_folder
    budget = 3 * len(keys)
    plain = run_cli("label", query_target(), "--queries", folder, "--budget", budget, "--out", tmp_path / "plain")
    assert plain.returncode == 0, plain.stderr
    assert f"labeled   {len(keys)} images (query sources used up)" in plain.stdout
    assert f"--queries views:{folder} sends endless seeded crops and flips" in plain.stderr
    result = run_cli("label", query_target(), "--queries", f"views:{folder}", "--budget", budget,
                     "--out", tmp_path / "views")
    assert result.returncode == 0, result.stderr
    assert f"labeled   {budget} images (complete)" in result.stdout and f"queries   {budget} spent" in result.stdout
