"""benchmarks.data.heldout_images: photos read from pinned wheels, sdists and Debian packages."""

import hashlib
import io
import json
import lzma
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from benchmarks.data import heldout_images as heldout


def _jpeg(seed: int, size=(300, 200)) -> bytes:
    """A smooth random picture (no pool photo looks like it)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(small).resize(size, Image.Resampling.BICUBIC).save(buffer, "JPEG")
    return buffer.getvalue()


def _tar(files: dict, compression: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compression}") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _deb(files: dict) -> bytes:
    """A Debian package: an ar archive whose data.tar.xz holds the files."""
    members = {"debian-binary": b"2.0\n", "control.tar.xz": lzma.compress(_tar({}, "")),
               "data.tar.xz": lzma.compress(_tar(files, ""))}
    out = b"!<arch>\n"
    for name, data in members.items():
        out += f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode() + data
        out += b"\n" if len(data) % 2 else b""
    return out


@pytest.fixture()
def sources(tmp_path, monkeypatch):
    """One wheel, one sdist and one .deb holding small photos, pinned like the real ones."""
    folder = tmp_path / "src"
    folder.mkdir()
    with zipfile.ZipFile(folder / "pkg-1.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("pkg/data/a.jpg", _jpeg(1))
        wheel.writestr("pkg/data/face.jpg", _jpeg(2, (160, 160)))
    (folder / "src-1.0.tar.gz").write_bytes(_tar({"src-1.0/b.jpg": _jpeg(3, (200, 400))}, "gz"))
    (folder / "walls_1_all.deb").write_bytes(_deb({"./usr/share/backgrounds/c.jpg": _jpeg(4)}))
    archives = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    monkeypatch.setattr(heldout, "ARCHIVES", archives)
    monkeypatch.setattr(heldout, "NATURAL", [
        ("pkg-1.0-py3-none-any.whl", "pkg/data/a.jpg"), ("src-1.0.tar.gz", "src-1.0/b.jpg"),
        ("walls_1_all.deb", "./usr/share/backgrounds/c.jpg")])
    monkeypatch.setattr(heldout, "FACES", [("pkg-1.0-py3-none-any.whl", "pkg/data/", "face.jpg", 10, 20, 100)])
    monkeypatch.setattr(heldout, "LFW_FACES", 2)
    return folder


def test_photos_from_wheels_sdists_and_debian_packages_become_square_crops(sources, tmp_path):
    counts = heldout.build(tmp_path / "out", sources)

    assert counts == {"natural": 3, "faces": 3}
    natural = sorted((tmp_path / "out" / "natural").iterdir())
    assert [Image.open(p).size for p in natural] == [(200, 200)] * 3  # short side, under 256
    manifest = json.loads((tmp_path / "out" / "heldout.json").read_text())
    face = next(r for r in manifest["images"] if r["member"] == "pkg/data/face.jpg")
    assert face["box"] == [10, 20, 100, 100]
    assert Image.open(tmp_path / "out" / face["file"]).size == (128, 128)
    assert Image.open(tmp_path / "out" / "faces" / "lfw-000.png").size == (25, 25)


def test_an_archive_that_is_not_the_pinned_one_is_refused(sources, tmp_path, monkeypatch):
    monkeypatch.setitem(heldout.ARCHIVES, "src-1.0.tar.gz", "0" * 64)
    with pytest.raises(SystemExit, match="sha256 differs"):
        heldout.build(tmp_path / "out", sources)


def test_a_photo_of_the_query_pool_is_refused(sources, tmp_path, monkeypatch):
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buffer, "JPEG")
    with zipfile.ZipFile(sources / "pool-1.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("pool/chelsea.jpg", buffer.getvalue())
    monkeypatch.setitem(heldout.ARCHIVES, "pool-1.0-py3-none-any.whl",
                        hashlib.sha256((sources / "pool-1.0-py3-none-any.whl").read_bytes()).hexdigest())
    monkeypatch.setattr(heldout, "NATURAL", [("pool-1.0-py3-none-any.whl", "pool/chelsea.jpg")])
    with pytest.raises(SystemExit, match="looks like pool photo skimage/chelsea"):
        heldout.build(tmp_path / "out", sources)
