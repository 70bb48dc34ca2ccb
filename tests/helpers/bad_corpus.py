"""A generated corpus of bad input: every case the preprocessing stages must survive, each a real file (or
manifest line) with its expected outcome. Small in bytes: the huge images are PNG headers that claim their
size, the very long audio is a constant FLAC.

`write_corpus` writes the files into a dataset folder; `mix_into` also appends the manifest lines to the
dataset's manifest and tells on which line each case landed (rejections are matched by line).
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

KEPT = None  # the expected outcome of a case the stage normalises and keeps
MISSING = "<missing>"  # ... of a case in a stage whose modality the record does not have
MANIFEST = "manifest.jsonl"
LONG_AUDIO_SECONDS = 600
LONG_TEXT_CHARS = 200_000


@dataclass(frozen=True)
class Case:
    """One bad input. `modality` is the stage that judges it (None: the manifest, so every stage rejects
    it); `expected` is KEPT or a substring of the rejection reason; `row` is the manifest row without
    label and split (`raw` replaces the whole line); `files` and `links` are written under the dataset."""

    name: str
    modality: str | None
    expected: str | None
    row: dict = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)  # link path -> target, relative to the dataset
    raw: str | None = None
    label: str | None = None  # None: the corpus label (one the training split has)
    split: str = "train"
    dvc_safe: bool = True  # False: DVC itself cannot hash the dataset folder with this file in it

    @property
    def id(self) -> str:
        return self.row.get("id", f"bad_{self.name}")

    @property
    def file(self) -> str | None:
        """The file named for the judging modality (what a rejection's `file` says)."""
        keys = {"text": "text_path", "image": "image", "audio": "audio"}
        return MANIFEST if self.modality is None else self.row.get(keys[self.modality])

    @property
    def rejected_id(self) -> str | None:
        """The id a rejection of this case carries (none for a line that is not a JSON object with an id)."""
        return None if self.raw is not None else self.id

    def outcome(self, modality: str) -> str | None:
        """In the stage of `modality`: KEPT, MISSING (the record has no such file) or a reason substring."""
        if self.modality is None or self.modality == modality:
            return self.expected
        return MISSING

    def line(self, label: str) -> str:
        if self.raw is not None:
            return self.raw
        return json.dumps({"id": self.id, "label": self.label or label, "split": self.split, **self.row})


# ---------------------------------------------------------------- file makers


def _image(img: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def _noise(mode: str = "RGB", size=(40, 24)) -> Image.Image:
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels).convert(mode)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_claiming(width: int, height: int) -> bytes:
    """A PNG with valid CRCs whose header claims width × height RGB pixels, with a tiny IDAT."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(bytes(16)))
        + _png_chunk(b"IEND", b"")
    )


def _damaged(data: bytes, start_fraction: float = 0.5, length: int = 64) -> bytes:
    """The bytes with a run in the middle overwritten by alternating 0x00 / 0xFF (markers and garbage)."""
    out = bytearray(data)
    start = int(len(out) * start_fraction)
    for i in range(start, min(start + length, len(out))):
        out[i] = 0xFF if i % 2 else 0x00
    return bytes(out)


def _bogus_huffman_table(jpeg: bytes) -> bytes:
    """The JPEG with the code counts of its first Huffman table (DHT) overwritten: libjpeg refuses it."""
    out = bytearray(jpeg)
    counts = jpeg.index(b"\xff\xc4") + 5  # marker, segment length, table class/id
    out[counts : counts + 16] = b"\xff" * 16
    return bytes(out)


def _audio(wave: np.ndarray, rate: int, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def _tone(rate: int = 8000, seconds: float = 0.5, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.stack([0.4 * np.sin(2 * np.pi * 440 * (c + 1) * t) for c in range(channels)], axis=1)


def _with(value: float) -> np.ndarray:
    wave = _tone().astype(np.float32)
    wave[len(wave) // 2] = value
    return wave


def _long_flac(rate: int = 8000, seconds: int = LONG_AUDIO_SECONDS) -> bytes:
    """`seconds` of a constant signal: FLAC stores each block in a few bytes, so it stays tiny."""
    buffer = io.BytesIO()
    block = np.full(rate, 0.25, dtype=np.float32)
    with sf.SoundFile(buffer, "w", rate, 1, format="FLAC", subtype="PCM_16") as stream:
        for _ in range(seconds):
            stream.write(block)
    return buffer.getvalue()


def _long_text(chars: int = LONG_TEXT_CHARS) -> str:
    """A text of multi-byte characters (2 and 3 bytes), so a byte limit cuts one in the middle."""
    words = "naïve café river € stream déjà-vu forest ".split(" ")
    text = " ".join(words[i % len(words)] or "grove" for i in range(chars // 4))
    return text[:chars]


# ---------------------------------------------------------------- the cases


def cases() -> list[Case]:
    """Every bad case, with the outcome each stage should give it."""
    wav = _audio(_tone(), 8000)
    flac = _audio(_tone(16000), 16000, "FLAC")
    png = _image(_noise(size=(64, 64)), "PNG")
    jpeg = _image(_noise(size=(64, 64)), "JPEG", quality=90)
    image = [
        Case(
            "png_truncated",
            "image",
            "truncated",
            {"image": "image/truncated.png"},
            {"image/truncated.png": png[: len(png) // 2]},
        ),
        Case(
            "png_corrupt",
            "image",
            "cannot decode image",
            {"image": "image/corrupt.png"},
            {"image/corrupt.png": _damaged(png)},
        ),
        Case(
            "jpeg_truncated",
            "image",
            "truncated",
            {"image": "image/truncated.jpg"},
            {"image/truncated.jpg": jpeg[: len(jpeg) // 2]},
        ),
        Case(
            "jpeg_corrupt",
            "image",
            "cannot decode image",
            {"image": "image/corrupt.jpg"},
            {"image/corrupt.jpg": _bogus_huffman_table(jpeg)},
        ),
        Case(
            "text_as_png",
            "image",
            "not an image",
            {"image": "image/text.png"},
            {"image/text.png": b"hello, I am a text file with a .png name\n"},
        ),
        Case("image_zero_bytes", "image", "is empty (0 bytes)", {"image": "image/empty.png"}, {"image/empty.png": b""}),
        Case(
            "cmyk_jpeg", "image", KEPT, {"image": "image/cmyk.jpg"}, {"image/cmyk.jpg": _image(_noise("CMYK"), "JPEG")}
        ),
        Case(
            "png_16bit",
            "image",
            KEPT,
            {"image": "image/deep.png"},
            {
                "image/deep.png": _image(
                    Image.fromarray((np.arange(24 * 40, dtype=np.uint16).reshape(24, 40) * 60)), "PNG"
                )
            },
        ),
        Case("grayscale", "image", KEPT, {"image": "image/gray.png"}, {"image/gray.png": _image(_noise("L"), "PNG")}),
        Case("one_bit", "image", KEPT, {"image": "image/bits.png"}, {"image/bits.png": _image(_noise("1"), "PNG")}),
        Case(
            "palette", "image", KEPT, {"image": "image/palette.png"}, {"image/palette.png": _image(_noise("P"), "PNG")}
        ),
        Case(
            "palette_transparent",
            "image",
            KEPT,
            {"image": "image/palette_t.png"},
            {"image/palette_t.png": _image(_noise("P"), "PNG", transparency=0)},
        ),
        Case("rgba", "image", KEPT, {"image": "image/rgba.png"}, {"image/rgba.png": _image(_noise("RGBA"), "PNG")}),
        Case("gray_alpha", "image", KEPT, {"image": "image/la.png"}, {"image/la.png": _image(_noise("LA"), "PNG")}),
        # default max_pixels 50M: 8000×8000 is in PIL's warning range (1-2×), 100000×100000 in its error range
        Case(
            "huge_warning_range",
            "image",
            "image too large",
            {"image": "image/huge_8k.png"},
            {"image/huge_8k.png": png_header_claiming(8000, 8000)},
        ),
        Case(
            "huge_error_range",
            "image",
            "image too large",
            {"image": "image/huge_100k.png"},
            {"image/huge_100k.png": png_header_claiming(100_000, 100_000)},
        ),
        Case("absolute_path", "image", "absolute path", {"image": "/etc/hostname"}),
        Case("dotdot_path", "image", "escapes the dataset", {"image": "image/../../outside.png"}),
        Case(
            "symlink_out",
            "image",
            "escapes the dataset",
            {"image": "image/link_out.png"},
            links={"image/link_out.png": "../../outside.png"},
        ),
        Case(
            "symlink_loop",
            "image",
            "cannot be resolved",
            {"image": "image/loop.png"},
            links={"image/loop.png": "loop.png"},
            dvc_safe=False,
        ),
        Case("missing_file", "image", "does not exist", {"image": "image/nowhere.png"}),
        Case("directory", "image", "not a regular file", {"image": "image/a_folder"}, {"image/a_folder/x.txt": b"x"}),
        Case("nul_in_path", "image", "cannot be resolved", {"image": "image/bad\u0000name.png"}),
        Case("name_too_long", "image", "cannot be resolved", {"image": "image/" + "n" * 300 + ".png"}),
    ]
    audio = [
        Case(
            "wav_truncated",
            "audio",
            "audio file is truncated",
            {"audio": "audio/truncated.wav"},
            {"audio/truncated.wav": wav[: len(wav) // 2 + 1]},
        ),
        Case(
            "wav_header_only",
            "audio",
            "audio file is truncated",
            {"audio": "audio/header_only.wav"},
            {"audio/header_only.wav": wav[:44]},
        ),
        Case(
            "flac_corrupt",
            "audio",
            "cannot decode audio",
            {"audio": "audio/corrupt.flac"},
            {"audio/corrupt.flac": _damaged(flac, length=200)},
        ),
        Case(
            "flac_truncated",
            "audio",
            "cannot decode audio",
            {"audio": "audio/truncated.flac"},
            {"audio/truncated.flac": flac[: len(flac) // 2]},
        ),
        Case(
            "text_as_wav",
            "audio",
            "cannot decode audio",
            {"audio": "audio/text.wav"},
            {"audio/text.wav": b"this is not audio\n"},
        ),
        Case("audio_zero_bytes", "audio", "is empty (0 bytes)", {"audio": "audio/empty.wav"}, {"audio/empty.wav": b""}),
        Case(
            "zero_frames",
            "audio",
            "zero samples",
            {"audio": "audio/zero_frames.wav"},
            {"audio/zero_frames.wav": _audio(np.zeros((0, 1)), 8000)},
        ),
        Case(
            "silent", "audio", KEPT, {"audio": "audio/silent.wav"}, {"audio/silent.wav": _audio(np.zeros(4000), 8000)}
        ),
        Case(
            "nan_samples",
            "audio",
            "NaN or Inf",
            {"audio": "audio/nan.wav"},
            {"audio/nan.wav": _audio(_with(np.nan), 8000, subtype="FLOAT")},
        ),
        Case(
            "inf_samples",
            "audio",
            "NaN or Inf",
            {"audio": "audio/inf.wav"},
            {"audio/inf.wav": _audio(_with(np.inf), 8000, subtype="FLOAT")},
        ),
        Case(
            "stereo",
            "audio",
            KEPT,
            {"audio": "audio/stereo.wav"},
            {"audio/stereo.wav": _audio(_tone(channels=2), 8000)},
        ),
        Case(
            "six_channels",
            "audio",
            KEPT,
            {"audio": "audio/surround.wav"},
            {"audio/surround.wav": _audio(_tone(seconds=0.2, channels=6), 8000)},
        ),
        Case("very_long", "audio", KEPT, {"audio": "audio/long.flac"}, {"audio/long.flac": _long_flac()}),
        Case(
            "rate_too_low",
            "audio",
            "min_sample_rate",
            {"audio": "audio/rate_2k.wav"},
            {"audio/rate_2k.wav": _audio(_tone(2000, 0.1), 2000)},
        ),
        Case(
            "rate_too_high",
            "audio",
            "max_sample_rate",
            {"audio": "audio/rate_384k.wav"},
            {"audio/rate_384k.wav": _audio(_tone(384000, 0.01), 384000)},
        ),
        Case(
            "rate_odd",
            "audio",
            "max_ratio_terms",
            {"audio": "audio/rate_44101.wav"},
            {"audio/rate_44101.wav": _audio(_tone(44101, 0.02), 44101)},
        ),
    ]
    text = [
        Case(
            "latin1",
            "text",
            "not valid UTF-8",
            {"text_path": "text/latin1.txt"},
            {"text/latin1.txt": "un café à Paris".encode("latin-1")},
        ),
        Case(
            "utf16",
            "text",
            "not valid UTF-8",
            {"text_path": "text/utf16.txt"},
            {"text/utf16.txt": "a river at dawn".encode("utf-16")},
        ),
        Case(
            "utf8_bom",
            "text",
            KEPT,
            {"text_path": "text/bom.txt"},
            {"text/bom.txt": "a quiet river".encode("utf-8-sig")},
        ),
        Case("text_zero_bytes", "text", "is empty (0 bytes)", {"text_path": "text/empty.txt"}, {"text/empty.txt": b""}),
        Case("blank_file", "text", "empty text", {"text_path": "text/blank.txt"}, {"text/blank.txt": b" \n\t \n"}),
        Case("inline_empty", "text", "empty text", {"text": ""}),
        Case("inline_blank", "text", "empty text", {"text": "   \n "}),
        Case(
            "long_file", "text", KEPT, {"text_path": "text/long.txt"}, {"text/long.txt": _long_text().encode("utf-8")}
        ),
        Case("long_inline", "text", KEPT, {"text": _long_text(LONG_TEXT_CHARS // 4)}),
        Case("text_missing_file", "text", "does not exist", {"text_path": "text/nowhere.txt"}),
    ]
    manifest = [
        Case("malformed_line", None, "malformed JSON", raw='{"id": "bad_malformed_line", "label": '),
        Case("not_an_object", None, "expected a JSON object", raw='["bad", "line"]'),
        Case("no_id", None, "'id'", raw=json.dumps({"label": "x", "text": "no id here"})),
        Case("duplicate_id", None, "duplicate id", {"id": "bad_utf8_bom", "text": "a second record, same id"}),
        Case(
            "unseen_label",
            None,
            "does not occur in the training split",
            {"text": "a label only in test"},
            label="zz_unseen_label",
            split="test",
        ),
    ]
    return image + audio + text + manifest


def write_corpus(root: Path, dvc_safe: bool = False) -> list[Case]:
    """Write every case's files and links under the dataset folder `root` (and the file a link or `../`
    path points at, beside it); returns the cases (only the DVC-safe ones if `dvc_safe`)."""
    chosen = [c for c in cases() if c.dvc_safe or not dvc_safe]
    (root.parent / "outside.png").write_bytes(_image(_noise(), "PNG"))
    for case in chosen:
        for relative, data in case.files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        for relative, target in case.links.items():
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target, root / relative)
    for folder in ("text", "image", "audio"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    return chosen


def mix_into(root: Path, label: str | None = None, dvc_safe: bool = False) -> dict[str, tuple[Case, int]]:
    """Write the corpus into the dataset at `root` and append its lines to root/manifest.jsonl (created if
    absent); `label` (default: the first record's) must occur in the training split. Returns
    case name -> (case, manifest line number)."""
    manifest = root / MANIFEST
    lines = manifest.read_text(encoding="utf-8").splitlines() if manifest.exists() else []
    if label is None:
        label = next((json.loads(line)["label"] for line in lines if line.strip()), "alpha")
    placed = {}
    for case in write_corpus(root, dvc_safe):
        lines.append(case.line(label))
        placed[case.name] = (case, len(lines))
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return placed
