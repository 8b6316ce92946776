"""The .svqt token file: round trips, the documented byte layout, and every kind of corruption."""

from __future__ import annotations

import dataclasses
import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from simvq_audio.errors import SimVQError, TokenFileError
from simvq_audio.tokens import (
    FORMAT_VERSION,
    MAGIC,
    InvalidTokensError,
    TokenHeader,
    codes_dtype,
    read_header,
    read_tokens,
    write_tokens,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "token-format.md"


def make_header(codebook_size: int = 1024, n_codebooks: int = 4, n_frames: int = 37, **overrides) -> TokenHeader:
    fields = dict(
        model_id="sha256:0123abcd",
        model_name="tiny-test",
        sample_rate=16000,
        frame_rate=50.0,
        hop_length=320,
        codebook_size=codebook_size,
        n_codebooks=n_codebooks,
        n_frames=n_frames,
        n_samples=max(n_frames * 320 - 7, 0),
        original_sample_rate=22050,
        original_n_samples=round(max(n_frames * 320 - 7, 0) * 22050 / 16000),
        channels=1,
        original_channels=2,
        source="speaker/utt é.flac",
    )
    fields.update(overrides)
    return TokenHeader(**fields)


def random_codes(header: TokenHeader, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, header.codebook_size, size=(header.n_codebooks, header.n_frames), dtype=np.int64)
    if codes.size:
        codes.flat[0] = header.codebook_size - 1  # exercise the top of the range
    return codes


def written(tmp_path: Path, header: TokenHeader | None = None, name: str = "t.svqt") -> tuple[Path, np.ndarray]:
    header = header or make_header()
    codes = random_codes(header)
    path = tmp_path / name
    write_tokens(path, codes, header)
    return path, codes


# -------------------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    ("codebook_size", "n_codebooks", "n_frames", "dtype"),
    [
        (1024, 1, 50, np.uint16),
        (1024, 8, 37, np.uint16),
        (65536, 3, 11, np.uint16),
        (65537, 2, 13, np.uint32),
        (2**20, 4, 9, np.uint32),
        (2**32, 1, 5, np.uint32),
        (64, 2, 1, np.uint16),
    ],
)
def test_round_trip(tmp_path, codebook_size, n_codebooks, n_frames, dtype):
    header = make_header(codebook_size, n_codebooks, n_frames)
    assert header.dtype == np.dtype(dtype).name
    path, codes = written(tmp_path, header)
    tokens = read_tokens(path)
    assert tokens.header == header
    assert tokens.codes.dtype == dtype
    assert tokens.codes.shape == (n_codebooks, n_frames)
    np.testing.assert_array_equal(tokens.codes, codes)
    assert tokens.codes.flags.writeable and tokens.codes.flags.c_contiguous
    assert read_header(path) == header


def test_round_trip_torch_codes(tmp_path):
    header = make_header(64, 2, 10)
    codes = torch.randint(0, 64, (2, 10), generator=torch.Generator().manual_seed(0))
    write_tokens(tmp_path / "t.svqt", codes, header)
    np.testing.assert_array_equal(read_tokens(tmp_path / "t.svqt").codes, codes.numpy())


def test_zero_frames_allowed(tmp_path):
    header = make_header(1024, 2, 0)
    write_tokens(tmp_path / "t.svqt", np.zeros((2, 0), dtype=np.int64), header)
    tokens = read_tokens(tmp_path / "t.svqt")
    assert tokens.codes.shape == (2, 0) and tokens.header.n_frames == 0


def test_codes_dtype_rule():
    assert codes_dtype(2) == np.uint16
    assert codes_dtype(65536) == np.uint16
    assert codes_dtype(65537) == np.uint32
    assert codes_dtype(2**32) == np.uint32
    with pytest.raises(ValueError):
        codes_dtype(2**32 + 1)


def test_header_normalises_numpy_ints_and_derives_dtype():
    header = make_header(codebook_size=np.int64(4096), n_frames=np.int32(3), frame_rate=np.float32(50))
    assert type(header.codebook_size) is int and type(header.n_frames) is int and type(header.frame_rate) is float
    assert header.dtype == "uint16"
    assert header.duration == pytest.approx(header.n_samples / 16000)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(codebook_size=0),
        dict(n_codebooks=0),
        dict(n_frames=-1),
        dict(sample_rate=0),
        dict(frame_rate=float("nan")),
        dict(hop_length=2.5),
        dict(channels=True),
        dict(dtype="uint32"),  # disagrees with codebook_size 1024
        dict(layout="n_frames,n_codebooks"),
        dict(model_id=3),
        dict(n_samples=37 * 320 + 1),  # more samples than the frames can hold
        dict(original_n_samples=10**12),  # would make a decoder allocate terabytes
        dict(original_n_samples=0),
    ],
)
def test_invalid_header_rejected(overrides):
    with pytest.raises(InvalidTokensError):
        make_header(**overrides)


# ------------------------------------------------------------------------------------------------ byte layout


def test_byte_layout_matches_documentation(tmp_path):
    header = make_header(1024, 3, 7)
    path, codes = written(tmp_path, header)
    data = path.read_bytes()
    magic, version, header_len = struct.unpack_from("<4sHI", data, 0)
    assert magic == MAGIC == b"SVQT" and version == FORMAT_VERSION == 1
    offset = 10 + header_len
    assert offset % 8 == 0, "payload must be 8-byte aligned"
    text = data[10:offset].decode("utf-8")
    assert text == text.rstrip() + " " * (len(text) - len(text.rstrip()))  # padding is trailing spaces only
    parsed = json.loads(text)
    assert list(parsed) == sorted(parsed)
    assert parsed == dataclasses.asdict(header)
    assert len(data) == offset + codes.size * 2
    np.testing.assert_array_equal(np.frombuffer(data, "<u2", offset=offset).reshape(3, 7), codes)
    mapped = np.memmap(path, dtype="<u2", mode="r", offset=offset, shape=(3, 7))
    np.testing.assert_array_equal(mapped, codes)


def _doc_code_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.parametrize(("codebook_size", "n_codebooks", "n_frames"), [(1024, 4, 37), (2**17, 2, 5), (64, 1, 0)])
def test_documented_numpy_reader(tmp_path, codebook_size, n_codebooks, n_frames):
    source = next(block for block in _doc_code_blocks() if "def read_svqt" in block)
    assert "simvq_audio" not in source
    namespace: dict = {}
    exec(compile(source, str(DOC), "exec"), namespace)
    header = make_header(codebook_size, n_codebooks, n_frames)
    path, codes = written(tmp_path, header)
    parsed, doc_codes = namespace["read_svqt"](path)
    assert parsed == dataclasses.asdict(header)
    assert doc_codes.shape == (n_codebooks, n_frames)
    np.testing.assert_array_equal(doc_codes, codes)


def test_documented_memmap_snippet(tmp_path):
    source = next(block for block in _doc_code_blocks() if "np.memmap" in block)
    header = make_header(1024, 2, 9)
    path, codes = written(tmp_path, header)
    namespace = {"np": np, "struct": struct, "path": path, "header": dataclasses.asdict(header)}
    exec(compile(source, str(DOC), "exec"), namespace)
    np.testing.assert_array_equal(namespace["codes"], codes)


def test_documented_fields_match_header():
    text = DOC.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.M))
    assert documented == {f.name for f in dataclasses.fields(TokenHeader)}


# ---------------------------------------------------------------------------------------------------- writing


@pytest.mark.parametrize(
    ("codes", "match"),
    [
        (np.zeros((4, 36), np.int64), "shape"),
        (np.zeros((3, 37), np.int64), "shape"),
        (np.zeros((4 * 37,), np.int64), "shape"),
        (np.full((4, 37), 1024, np.int64), "range|in \\[0, 1024\\)"),
        (np.full((4, 37), -1, np.int64), "in \\[0, 1024\\)"),
        (np.zeros((4, 37), np.float32), "integers"),
    ],
)
def test_write_rejects_codes_that_do_not_match_header(tmp_path, codes, match):
    path = tmp_path / "bad.svqt"
    with pytest.raises(InvalidTokensError, match=match) as info:
        write_tokens(path, codes, make_header())
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, SimVQError)
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary file left


def test_write_replaces_existing_file_atomically(tmp_path):
    path, _ = written(tmp_path)
    header = make_header(64, 1, 3)
    write_tokens(path, np.array([[1, 2, 3]]), header)
    assert read_tokens(path).codes.tolist() == [[1, 2, 3]]
    assert [p.name for p in tmp_path.iterdir()] == ["t.svqt"]


# ------------------------------------------------------------------------------------------------- corruption


def _rewrite(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _with_header(prefix_version: int, header_obj, payload: bytes = b"", raw: bytes | None = None) -> bytes:
    body = raw if raw is not None else json.dumps(header_obj, sort_keys=True).encode()
    return struct.pack("<4sHI", b"SVQT", prefix_version, len(body)) + body + payload


def _corrupt_cases(path: Path) -> dict[str, tuple[bytes, str]]:
    good = path.read_bytes()
    header_len = struct.unpack_from("<I", good, 6)[0]
    header = json.loads(good[10 : 10 + header_len])
    payload = good[10 + header_len :]
    missing = {k: v for k, v in header.items() if k != "hop_length"}
    too_big = np.full((header["n_codebooks"], header["n_frames"]), header["codebook_size"], "<u2").tobytes()
    wrong_dtype = dict(header, dtype="uint32")
    return {
        "empty": (b"", "empty file"),
        "bad magic": (b"RIFF" + good[4:], "not a .svqt token file"),
        "short prefix": (good[:7], "truncated"),
        "newer version": (good[:4] + struct.pack("<H", FORMAT_VERSION + 1) + good[6:], "written by a newer version"),
        "version zero": (good[:4] + struct.pack("<H", 0) + good[6:], "invalid token format version 0"),
        "truncated header": (good[: 10 + header_len // 2], "truncated header"),
        "truncated payload": (good[:-3], f"expected {len(payload)} bytes of codes .*found {len(payload) - 3}"),
        "no payload": (good[: 10 + header_len], f"expected {len(payload)} bytes of codes .*found 0"),
        "trailing bytes": (good + b"\0\0", "corrupt payload"),
        "bad json": (_with_header(1, None, payload, raw=b'{"model_id": "x", '), "not valid UTF-8 JSON"),
        "bad utf8": (_with_header(1, None, payload, raw=b'{"a": "\xff"}'), "not valid UTF-8 JSON"),
        "json not object": (_with_header(1, [1, 2], payload), "expected an object"),
        "missing key": (_with_header(1, missing, payload), "missing required key.*hop_length"),
        "wrong dtype": (_with_header(1, wrong_dtype, payload), "dtype 'uint32' does not match"),
        "bad value": (_with_header(1, dict(header, n_frames="many"), payload), "n_frames must be an integer"),
        "code out of range": (good[: 10 + header_len] + too_big, "out of range for codebook_size"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "empty",
        "bad magic",
        "short prefix",
        "newer version",
        "version zero",
        "truncated header",
        "truncated payload",
        "no payload",
        "trailing bytes",
        "bad json",
        "bad utf8",
        "json not object",
        "missing key",
        "wrong dtype",
        "bad value",
        "code out of range",
    ],
)
def test_corrupt_file_raises_token_file_error_naming_file(tmp_path, case):
    good, _ = written(tmp_path, make_header(codebook_size=1000))
    data, pattern = _corrupt_cases(good)[case]
    path = _rewrite(tmp_path / f"{case.replace(' ', '_')}.svqt", data)
    with pytest.raises(TokenFileError, match=pattern) as info:
        read_tokens(path)
    assert str(info.value).startswith(f"{path}: ")
    if case not in ("truncated payload", "no payload", "trailing bytes", "code out of range"):
        with pytest.raises(TokenFileError, match=pattern):
            read_header(path)  # header-level problems are found without reading the payload
    else:
        read_header(path)


def test_unknown_header_keys_are_ignored(tmp_path):
    good, codes = written(tmp_path)
    data = good.read_bytes()
    header_len = struct.unpack_from("<I", data, 6)[0]
    header = json.loads(data[10 : 10 + header_len])
    header["added_later"] = {"anything": [1, 2]}
    path = _rewrite(tmp_path / "extra.svqt", _with_header(1, header, data[10 + header_len :]))
    np.testing.assert_array_equal(read_tokens(path).codes, codes)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(TokenFileError, match="file not found") as info:
        read_tokens(tmp_path / "nope.svqt")
    assert str(tmp_path / "nope.svqt") in str(info.value)
    with pytest.raises(TokenFileError, match="is a directory"):
        read_header(tmp_path)
