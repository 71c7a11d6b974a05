"""Query sources: every kind, fitting to the contract, bad files, determinism, mixing."""

import numpy as np
import pytest
from conftest import png_bomb
from PIL import Image

from copycat_tf.errors import CopycatError
from copycat_tf.queries import ImageFitter, SourceSpec, open_query_source, photo_pool


def collect(source, **kwargs):
    return list(source.queries(**kwargs))


def test_folder_reads_every_format_and_colour_mode(query_folder):
    folder, keys = query_folder
    queries = collect(open_query_source(str(folder), (16, 12, 3)))
    assert sorted(q.key for q in queries) == keys
    for query in queries:
        assert query.rejection is None, (query.key, query.rejection)
        assert query.image.dtype == np.uint8 and query.image.shape == (16, 12, 3)
        assert query.image.std() > 0, query.key


def test_grayscale_contract_gets_one_channel(query_folder):
    folder, keys = query_folder
    queries = collect(open_query_source(str(folder), (10, 14, 1)))
    assert len(queries) == len(keys)
    assert all(q.image.shape == (10, 14, 1) for q in queries)


def test_bad_files_are_rejected_with_a_reason(query_folder, bad_query_files):
    folder, keys = query_folder
    expected = bad_query_files(folder)
    queries = collect(open_query_source(str(folder), (16, 16, 3)))
    rejected = {q.key: q.rejection for q in queries if q.rejection is not None}
    assert set(rejected) == set(expected)
    for key, fragment in expected.items():
        assert fragment in rejected[key], (key, rejected[key])
    assert sorted(q.key for q in queries if q.image is not None) == keys


def test_pillow_bomb_limit_and_explicit_limit(tmp_path):
    folder = tmp_path / "bombs"
    folder.mkdir()
    (folder / "huge.png").write_bytes(png_bomb(100_000, 100_000))
    Image.new("RGB", (100, 80), (200, 10, 10)).save(folder / "photo.png")
    queries = {q.key: q for q in collect(open_query_source(str(folder), (8, 8, 3), max_pixels=5000))}
    assert "decompression bomb" in queries["huge.png"].rejection
    assert "max_pixels 5,000" in queries["photo.png"].rejection
    queries = {q.key: q for q in collect(open_query_source(str(folder), (8, 8, 3)))}
    assert queries["photo.png"].image is not None


def test_symlink_loop_is_not_entered_and_links_are_deduplicated(query_folder):
    folder, keys = query_folder
    (folder / "n01" / "loop").symlink_to(folder)
    (folder / "again.jpg").symlink_to(folder / "a.jpg")
    (folder / "zz-link.png").symlink_to(folder / "n02" / "gray.jpeg")
    queries = collect(open_query_source(str(folder), (8, 8, 3)))
    found = sorted(q.key for q in queries)
    # A link to an already-listed file is sent once, under the first name in sorted order.
    assert found == keys


def test_transparency_is_composited_on_black():
    fitter = ImageFitter((4, 4, 3))
    clear_red = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    assert fitter.fit(clear_red).max() == 0
    half = Image.new("LA", (8, 8), (200, 255))
    assert (fitter.fit(half) == 200).all()


def test_16_bit_pixels_scale_to_8_bits():
    pixels = np.full((6, 6), 257 * 100, dtype=np.uint16)
    pixels[0, 0] = 65535
    image = Image.fromarray(pixels)
    fitted = ImageFitter((6, 6, 1)).fit(image)
    assert fitted[0, 0, 0] == 255 and fitted[3, 3, 0] == 100


@pytest.mark.parametrize("policy", ["resize", "center-crop", "pad"])
def test_resize_policies(policy):
    # 30 wide, 10 high: a white square in the middle of black side bands.
    pixels = np.zeros((10, 30), np.uint8)
    pixels[:, 10:20] = 255
    fitted = ImageFitter((10, 10, 1), resize=policy).fit(Image.fromarray(pixels))[..., 0]
    if policy == "center-crop":
        assert (fitted == 255).all()
    elif policy == "pad":
        assert (fitted[:3] == 0).all() and (fitted[-3:] == 0).all() and fitted[5].max() == 255
    else:
        assert fitted[:, 0].max() == 0 and fitted[:, 5].min() == 255


def test_list_file_resolves_relative_paths(query_folder, tmp_path):
    folder, _ = query_folder
    listing = tmp_path / "list.txt"
    absolute = folder / "n02" / "gray.jpeg"
    listing.write_text(f"# query list\nqueries/a.jpg\n\n{absolute}\nqueries/missing.png\n")
    queries = {q.key: q for q in collect(open_query_source(str(listing), (8, 8, 3)))}
    assert set(queries) == {"queries/a.jpg", str(absolute), "queries/missing.png"}
    assert queries["queries/a.jpg"].image.shape == (8, 8, 3)
    assert "cannot read" in queries["queries/missing.png"].rejection


@pytest.mark.parametrize(
    "shape, dtype, scale",
    [((5, 8, 8), np.uint8, 1), ((5, 8, 8, 1), np.uint8, 1), ((5, 8, 8, 3), np.float32, 1 / 255),
     ((5, 8, 8, 3), np.float64, 1.0)],
)
@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_array_sources(tmp_path, shape, dtype, scale, suffix):
    pixels = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
    path = tmp_path / f"x{suffix}"
    stored = (pixels * scale).astype(dtype)
    if suffix == ".npy":
        np.save(path, stored)
    else:
        np.savez(path, images=stored)
    channels = 3 if len(shape) == 4 and shape[3] == 3 else 1
    queries = collect(open_query_source(str(path), (8, 8, channels), seed=3))
    assert sorted(int(q.key) for q in queries) == list(range(5))
    for query in queries:
        np.testing.assert_array_equal(query.image, pixels[int(query.key)].reshape(8, 8, channels))


def test_array_is_resized_and_converted(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.full((2, 20, 20, 3), 90, np.uint8))
    images = [q.image for q in collect(open_query_source(str(path), (8, 8, 1)))]
    assert all(image.shape == (8, 8, 1) and (image == 90).all() for image in images)


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda p: np.save(p / "a.npy", np.zeros((2, 8, 8, 4), np.uint8)), "(N, H, W, 3)"),
        (lambda p: np.save(p / "a.npy", np.full((2, 8, 8), -1.0)), "[0, 1] or [0, 255]"),
        (lambda p: np.save(p / "a.npy", np.full((2, 8, 8), 300, np.int32)), "[0, 1] or [0, 255]"),
        (lambda p: np.save(p / "a.npy", np.array([{"x": 1}], dtype=object)), "allow_pickle=False"),
        (lambda p: np.savez(p / "a.npz", a=np.zeros((2, 8, 8)), b=np.zeros(2)), "name the images 'x'"),
        (lambda p: np.save(p / "a.npy", np.zeros((0, 8, 8), np.uint8)), "holds no images"),
    ],
)
def test_array_refusals(tmp_path, make, fragment):
    make(tmp_path)
    path = next(tmp_path.glob("a.np*"))
    with pytest.raises(CopycatError) as error:
        open_query_source(str(path), (8, 8, 1))
    assert fragment in str(error.value)


@pytest.mark.parametrize("kind", ["uniform", "gaussian"])
def test_noise_is_seeded(kind):
    first = [q.image for q in collect_n(open_query_source(f"noise:{kind}", (8, 8, 3), seed=1), 20)]
    again = [q.image for q in collect_n(open_query_source(f"noise:{kind}", (8, 8, 3), seed=1), 20)]
    other = [q.image for q in collect_n(open_query_source(f"noise:{kind}", (8, 8, 3), seed=2), 20)]
    np.testing.assert_array_equal(np.stack(first), np.stack(again))
    assert not np.array_equal(np.stack(first), np.stack(other))
    assert len({image.tobytes() for image in first}) == 20
    mean = np.stack(first).mean()
    assert 115 < mean < 140


def collect_n(source, n, **kwargs):
    stream = source.queries(**kwargs)
    try:
        return [next(stream) for _ in range(n)]
    finally:
        stream.close()


def test_photos_make_distinct_real_images():
    assert len(photo_pool()) >= 10
    queries = collect_n(open_query_source("photos", (24, 24, 3), seed=5), 200)
    images = np.stack([q.image for q in queries])
    assert images.shape == (200, 24, 24, 3)
    assert len({image.tobytes() for image in images}) == 200
    assert len({q.key.split("@")[0] for q in queries}) >= 10
    again = np.stack([q.image for q in collect_n(open_query_source("photos", (24, 24, 3), seed=5), 200)])
    np.testing.assert_array_equal(images, again)
    gray = collect_n(open_query_source("photos", (16, 20, 1), seed=5), 5)
    assert all(q.image.shape == (16, 20, 1) for q in gray)


def test_folder_order_is_a_seeded_shuffle(query_folder):
    folder, keys = query_folder
    order = lambda seed: [i.key for _, i in open_query_source(str(folder), (8, 8, 3), seed=seed).items()]  # noqa: E731
    assert order(0) == order(0)
    assert order(0) != order(1)
    assert sorted(order(0)) == keys


def test_start_skips_without_changing_the_stream(query_folder):
    folder, _ = query_folder
    source = open_query_source([str(folder), "noise:uniform:0.5"], (8, 8, 3), seed=4)
    whole = collect_n(source, 30)
    tail = collect_n(source, 18, start=12)
    assert [q.position for q in tail] == list(range(12, 30))
    assert [q.key for q in tail] == [q.key for q in whole[12:]]
    for a, b in zip(tail, whole[12:]):
        np.testing.assert_array_equal(a.image, b.image)


def test_one_worker_and_many_agree(query_folder):
    folder, _ = query_folder
    source = open_query_source(str(folder), (8, 8, 3), seed=2)
    serial = collect(source, workers=1, window=1)
    parallel = collect(source, workers=4, window=7)
    assert [q.key for q in serial] == [q.key for q in parallel]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(serial, parallel))


def test_mix_follows_weights():
    source = open_query_source(["noise:uniform", "noise:gaussian:0.2"], (4, 4, 1), seed=0)
    picks = [item.source for _, item in zip(range(5000), (i for _, i in source.items()))]
    assert source.weights == [pytest.approx(0.8), 0.2]
    assert 0.17 < np.mean(picks) < 0.23


def test_finite_source_leaves_the_mix_when_used_up(query_folder):
    folder, keys = query_folder
    source = open_query_source([str(folder), "noise:uniform"], (8, 8, 3), seed=0)
    items = [item for _, item in zip(range(200), (i for _, i in source.items()))]
    from_folder = [item.key for item in items if item.source == 0]
    assert sorted(from_folder) == keys
    last_folder_item = max(i for i, item in enumerate(items) if item.source == 0)
    assert last_folder_item < 100 and all(item.source == 1 for item in items[last_folder_item + 1:])


def test_spec_parsing(tmp_path):
    assert SourceSpec.parse("imagenet/:0.25") == SourceSpec("imagenet/", 0.25)
    assert SourceSpec.parse("noise:uniform") == SourceSpec("noise:uniform", None)
    assert SourceSpec.parse("noise:gaussian:2") == SourceSpec("noise:gaussian", 2.0)
    odd = tmp_path / "run:3"
    odd.mkdir()
    assert SourceSpec.parse(str(odd)) == SourceSpec(str(odd), None)


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("{tmp}/missing", "does not exist"),
        ("{tmp}/empty", "has no files"),
        ("{tmp}/texts", "no images"),
        ("{tmp}/empty.txt", "lists no image paths"),
        ("{tmp}/data.csv", "is not a folder, .txt list, .npy or .npz"),
        ("noise:pink", "unknown noise"),
        ("noise:uniform:0", "must be > 0"),
        ("noise:uniform:-1", "must be > 0"),
    ],
)
def test_bad_specs_raise_clear_errors(tmp_path, spec, fragment):
    (tmp_path / "empty").mkdir()
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("x")
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    (tmp_path / "data.csv").write_text("1,2\n")
    with pytest.raises(CopycatError) as error:
        open_query_source(spec.format(tmp=tmp_path), (8, 8, 3))
    assert fragment in str(error.value)


def test_weights_leave_room_for_unweighted_sources():
    with pytest.raises(CopycatError, match="add up to 1.2"):
        open_query_source(["noise:uniform:0.7", "noise:gaussian:0.5", "photos"], (8, 8, 3))
    source = open_query_source(["noise:uniform", "noise:gaussian:0.3", "noise:uniform"], (8, 8, 3))
    assert source.weights == [pytest.approx(0.35), 0.3, pytest.approx(0.35)]


@pytest.mark.parametrize("kwargs, fragment", [({"seed": -1}, "seed"), ({"resize": "zoom"}, "resize"),
                                              ({"max_pixels": 0}, "max_pixels")])
def test_bad_options(kwargs, fragment):
    with pytest.raises(CopycatError, match=fragment):
        open_query_source("noise:uniform", (8, 8, 3), **kwargs)
