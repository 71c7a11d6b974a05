"""benchmarks.data.query_pool: distinct photos from pinned archives, nested subsets, no overlap."""

import hashlib
import io
import json
import os
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from benchmarks.data import query_pool as pool


def _picture(seed: int, size=(300, 200)) -> Image.Image:
    """A smooth random colour picture: unrelated seeds give unrelated pictures."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


def _encoded(image: Image.Image, kind: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind)
    return buffer.getvalue()


def _rcc(files: dict) -> bytes:
    """A Qt resource file (format 1) holding one folder ``r`` with the files (odd ones zlib)."""
    names, offsets = b"", {}
    for name in ["r", *files]:
        offsets[name] = len(names)
        names += struct.pack(">HI", len(name), 0) + name.encode("utf-16-be")
    payload, entries = b"", [struct.pack(">IHII", 0, 2, 1, 1), struct.pack(">IHII", offsets["r"], 2, len(files), 2)]
    for index, (name, data) in enumerate(files.items()):
        flags = index % 2
        blob = struct.pack(">I", len(data)) + zlib.compress(data) if flags else data
        entries.append(struct.pack(">IHHHI", offsets[name], flags, 0, 0, len(payload)))
        payload += struct.pack(">I", len(blob)) + blob
    tree = b"".join(entries)
    header = 20
    return (b"qres" + struct.pack(">IIII", 1, header, header + len(tree), header + len(tree) + len(payload))
            + tree + payload + names)


def test_qt_resource_files_are_read_plain_and_compressed():
    files = {"a.webp": b"first picture", "b.png": b"second" * 50}
    assert pool.rcc_files(_rcc(files)) == {"/r/a.webp": files["a.webp"], "/r/b.png": files["b.png"]}
    with pytest.raises(SystemExit, match="qres"):
        pool.rcc_files(b"PK\x03\x04")


def test_subsets_are_nested_seeded_and_leave_out_sizes_above_the_pool():
    subsets = pool.nested_subsets(50, sizes=(5, 20, 100), seed=3)
    assert sorted(subsets) == ["20", "5", "all"]
    assert subsets["5"] == subsets["20"][:5] == subsets["all"][:5]
    assert sorted(subsets["all"]) == list(range(50))
    assert subsets == pool.nested_subsets(50, sizes=(5, 20, 100), seed=3)
    assert subsets["all"] != pool.nested_subsets(50, sizes=(5, 20, 100), seed=4)["all"]


def test_subset_folders_link_to_the_photos_and_a_rerun_replaces_them(tmp_path):
    (tmp_path / "photos").mkdir()
    files = [f"photos/{i:04d}.jpg" for i in range(4)]
    for i, name in enumerate(files):
        (tmp_path / name).write_bytes(bytes([i]))
    pool.write_subsets(tmp_path, files, {"2": [3, 1], "all": [3, 1, 0, 2]})
    two = tmp_path / "subsets" / "2"
    assert sorted(p.name for p in two.iterdir()) == ["0001.jpg", "0003.jpg"]
    assert all(p.is_symlink() and not os.path.isabs(os.readlink(p)) for p in two.iterdir())
    assert (two / "0003.jpg").read_bytes() == bytes([3])
    pool.write_subsets(tmp_path, files, {"all": [0, 1, 2, 3]})
    assert sorted(p.name for p in (tmp_path / "subsets").iterdir()) == ["all"]


def test_manifest_is_written_whole(tmp_path):
    manifest = {"photos": [{"file": "photos/0000.jpg", "licence": "CC0"}], "seed": 0}
    path = pool.write_manifest(tmp_path, manifest)
    assert json.loads(path.read_text()) == manifest
    assert [p.name for p in tmp_path.iterdir()] == ["pool.json"]


def test_overlap_check_finds_a_resized_copy_and_a_centre_crop_only():
    photo = _picture(1, (400, 300))
    crop = photo.crop((50, 0, 350, 300)).resize((256, 256))  # as heldout_images stores it
    copy = Image.open(io.BytesIO(_encoded(photo.resize((200, 150)))))
    references = [("natural/crop.png", crop), ("natural/other.png", _picture(2))]
    found = pool.overlaps([("a:copy", copy), ("a:unrelated", _picture(3))], references)
    assert found == [("a:copy", "natural/crop.png")]


def test_near_duplicates_are_kept_once():
    first, other = _picture(4), _picture(5)
    blurred_copy = Image.open(io.BytesIO(_encoded(first.resize((150, 100)))))
    kept, dropped = pool.distinct([first, other, blurred_copy])
    assert kept == [0, 1]
    assert dropped == [(2, 0)]


def test_colour_test_leaves_out_grayscale_and_mildly_toned_prints():
    photo = _picture(6)
    gray = photo.convert("L").convert("RGB")
    # toned like the sepia prints that gramps ships (spread 5-6, tint 16-20)
    sepia = Image.merge("RGB", [gray.getchannel(0).point(lambda v, k=k: min(255, int(v * k)))
                                for k in (1.03, 0.98, 0.88)])
    assert pool.is_colour(photo)
    assert not pool.is_colour(gray)
    assert not pool.is_colour(sepia)


@pytest.mark.parametrize("archive, member", [
    ("ai_benchmark-0.1.2-py3-none-any.whl", "ai_benchmark/data/a.jpg"),
    ("scratch_1.4.0.6~dfsg1-6.1_all.deb", "./usr/share/wallpapers/Next/contents/images/a.jpg"),
    ("unpinned-1.0-py3-none-any.whl", "pkg/a.jpg"),
])
def test_held_out_or_photos_pool_sources_and_unpinned_archives_are_refused(archive, member):
    with pytest.raises(SystemExit, match=archive.split("_")[0].split("-")[0]):
        pool.check_sources([(archive, member)])


@pytest.fixture()
def fake_pool(tmp_path, monkeypatch):
    """One pinned wheel: 3 photos, a copy, a grayscale one, a small one, and a photo inside a
    Qt resource file; a held-out folder."""
    source = tmp_path / "src"
    source.mkdir()
    wheel = "pics-1.0-py3-none-any.whl"
    with zipfile.ZipFile(source / wheel, "w") as z:
        for i in range(3):
            z.writestr(f"pics/data/{i}.jpg", _encoded(_picture(10 + i, (400, 300))))
        z.writestr("pics/data/3-copy.png", _encoded(_picture(10, (200, 150)), "PNG"))
        z.writestr("pics/data/4-gray.jpg", _encoded(_picture(20).convert("L")))
        z.writestr("pics/data/5-small.jpg", _encoded(_picture(21, (100, 90))))
        z.writestr("pics/data/6-drawing.jpg", _encoded(_picture(22)))
        z.writestr("pics/res.rcc", _rcc({"p.webp": _encoded(_picture(13, (300, 300)), "WEBP"),
                                         "q.png": _encoded(_picture(14, (300, 300)), "PNG")}))
    monkeypatch.setattr(pool, "ARCHIVES", {wheel: hashlib.sha256((source / wheel).read_bytes()).hexdigest()})
    monkeypatch.setattr(pool, "LICENCES", {wheel: "MIT (wheel metadata)"})
    monkeypatch.setattr(pool, "FOLDERS", ((wheel, "pics/data/", ("6-drawing.jpg",)),
                                          (wheel, "pics/res.rcc:/r/", ("q.png",))))
    monkeypatch.setattr(pool, "MEMBERS", [])
    monkeypatch.setattr(pool, "SUBSET_SIZES", (2, 20))
    heldout = tmp_path / "heldout"
    for kind in ("natural", "faces"):
        (heldout / kind).mkdir(parents=True)
    _picture(30).save(heldout / "natural" / "x.png")
    (heldout / "heldout.json").write_text("{}")
    return source, heldout


def test_build_writes_distinct_colour_photos_subsets_and_provenance(fake_pool, tmp_path):
    source, heldout = fake_pool
    out = tmp_path / "pool"
    counts = pool.build(out, source, heldout, seed=1)
    assert counts["photos"] == 4
    manifest = json.loads((out / "pool.json").read_text())
    assert [r["member"] for r in manifest["photos"]] == [
        *(f"pics/data/{i}.jpg" for i in range(3)), "pics/res.rcc:/r/p.webp"]
    record = manifest["photos"][0]
    assert record["licence"] == "MIT (wheel metadata)" and len(record["member_sha256"]) == 64
    assert record["archive_sha256"] == pool.ARCHIVES[record["archive"]]
    why = {r["member"]: r["why"] for r in manifest["left_out"]}
    assert why == {"pics/data/3-copy.png": "near duplicate of pics-1.0-py3-none-any.whl:pics/data/0.jpg",
                   "pics/data/4-gray.jpg": "not a colour photo",
                   "pics/data/5-small.jpg": "short side below 128 px"}
    with Image.open(out / "photos" / "0000.jpg") as image:
        assert image.format == "JPEG" and max(image.size) == pool.LONG_SIDE
    assert sorted(p.name for p in (out / "subsets").iterdir()) == ["2", "all"]
    assert set(manifest["subsets"]["2"]) <= set(manifest["subsets"]["all"])


def test_build_fails_when_a_photo_looks_like_a_held_out_image(fake_pool, tmp_path):
    source, heldout = fake_pool
    _picture(11, (400, 300)).crop((50, 0, 350, 300)).save(heldout / "natural" / "same.png")
    with pytest.raises(SystemExit, match="look like held-out"):
        pool.build(tmp_path / "pool", source, heldout)
