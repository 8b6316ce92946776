"""LibriTTS recipe: checksum table, resumable verified download (local HTTP server), safe extraction, manifests."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import soundfile as sf

from simvq_audio.data import libritts
from simvq_audio.data.libritts import (
    ARCHIVES,
    DONE_MARKER,
    MIRRORS,
    archive_urls,
    download_file,
    download_libritts,
    prepare_libritts,
    safe_extract,
)
from simvq_audio.data.manifest import read_manifest
from simvq_audio.errors import SimVQError

# ------------------------------------------------------------------------------------------ the table


def test_every_subset_has_well_formed_urls_and_checksums() -> None:
    assert set(ARCHIVES) == {"train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "test-clean"}
    hosts = {urlparse(m).netloc for m in MIRRORS}
    assert hosts == {"www.openslr.org", "us.openslr.org", "openslr.elda.org"}
    for subset, archive in ARCHIVES.items():
        urls = archive_urls(subset)
        assert len(urls) == len(MIRRORS)
        for url in urls:
            parsed = urlparse(url)
            assert parsed.scheme == "https" and parsed.netloc in hosts
            assert parsed.path == f"/resources/60/{subset}.tar.gz"
        if archive.md5 is not None:
            assert re.fullmatch(r"[0-9a-f]{32}", archive.md5)
        if archive.sha256 is not None:
            assert re.fullmatch(r"[0-9a-f]{64}", archive.sha256)
        assert archive.size is None or archive.size > 10**9
        assert archive.md5 or archive.sha256  # every subset is verified by at least one digest
    with pytest.raises(SimVQError, match="unknown LibriTTS subset"):
        archive_urls("train-clean-1000")


# ------------------------------------------------------------------------------------ local HTTP server


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        data = server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and not server.ignore_range:
            start = int(match.group(1))
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.cut_after is not None:  # simulate a dropped connection, once
            body, server.cut_after = body[: server.cut_after], None
        self.wfile.write(body)


@pytest.fixture()
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.requests, httpd.ignore_range, httpd.cut_after = {}, [], False, None
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _payload() -> bytes:
    rng = np.random.default_rng(0)
    return _tar_gz({f"LibriTTS/dev-clean/1/2/1_2_{i:06d}_000000.normalized.txt": rng.bytes(3000) for i in range(20)})


def _digests(data: bytes) -> dict:
    return {"size": len(data), "md5": hashlib.md5(data).hexdigest(), "sha256": hashlib.sha256(data).hexdigest()}


# -------------------------------------------------------------------------------------------- download


def test_download_verifies_and_renames(server, tmp_path: Path) -> None:
    data = _payload()
    server.files["/a.tar.gz"] = data
    dest = download_file([server.base + "/a.tar.gz"], tmp_path / "a.tar.gz", timeout=5, **_digests(data))
    assert dest.read_bytes() == data and not (tmp_path / "a.tar.gz.part").exists()
    assert server.requests == [("/a.tar.gz", None)]
    download_file([server.base + "/a.tar.gz"], dest, timeout=5)  # existing file: no request
    assert len(server.requests) == 1


def test_download_resumes_a_partial_file(server, tmp_path: Path) -> None:
    data = _payload()
    server.files["/a.tar.gz"] = data
    (tmp_path / "a.tar.gz.part").write_bytes(data[:1000])
    download_file([server.base + "/a.tar.gz"], tmp_path / "a.tar.gz", timeout=5, **_digests(data))
    assert server.requests == [("/a.tar.gz", "bytes=1000-")]
    assert (tmp_path / "a.tar.gz").read_bytes() == data


def test_download_recovers_from_a_dropped_connection_and_a_dead_mirror(server, tmp_path: Path) -> None:
    data = _payload()
    server.files["/a.tar.gz"] = data
    server.cut_after = 2500
    urls = [server.base + "/missing/a.tar.gz", server.base + "/a.tar.gz"]
    download_file(urls, tmp_path / "a.tar.gz", timeout=5, **_digests(data))
    assert (tmp_path / "a.tar.gz").read_bytes() == data
    # 404, then a cut transfer, then (next round) 404 again and a resumed request for the rest.
    assert server.requests[1] == ("/a.tar.gz", None) and server.requests[-1] == ("/a.tar.gz", "bytes=2500-")


def test_server_ignoring_range_restarts_from_zero(server, tmp_path: Path) -> None:
    data = _payload()
    server.files["/a.tar.gz"] = data
    server.ignore_range = True
    (tmp_path / "a.tar.gz.part").write_bytes(b"x" * 700)  # not even a prefix: must be discarded
    download_file([server.base + "/a.tar.gz"], tmp_path / "a.tar.gz", timeout=5, md5=_digests(data)["md5"])
    assert (tmp_path / "a.tar.gz").read_bytes() == data


def test_checksum_mismatch_is_an_error_and_deletes_the_download(server, tmp_path: Path) -> None:
    data = _payload()
    server.files["/a.tar.gz"] = data
    for wrong in ({"md5": "0" * 32}, {"sha256": "f" * 64}, {"size": len(data) + 1}):
        with pytest.raises(SimVQError, match=r"a\.tar\.gz\.part: (MD5|SHA-256|size)"):
            download_file([server.base + "/a.tar.gz"], tmp_path / "a.tar.gz", timeout=5, attempts=1, **wrong)
        assert not (tmp_path / "a.tar.gz").exists() and not (tmp_path / "a.tar.gz.part").exists()
    with pytest.raises(SimVQError, match="download failed from every URL"):
        download_file([server.base + "/nothing"], tmp_path / "b.tar.gz", timeout=5, attempts=2)


def test_download_libritts_extracts_marks_and_skips(server, tmp_path: Path, monkeypatch) -> None:
    data = _payload()
    server.files["/resources/60/dev-clean.tar.gz"] = data
    monkeypatch.setitem(ARCHIVES, "dev-clean", libritts.Archive("dev-clean", **_digests(data)))
    mirrors = [server.base + "/resources/60"]
    seen = []
    (folder,) = download_libritts(tmp_path, ["dev-clean"], mirrors, progress=lambda s, n, t: seen.append((s, n, t)))
    assert folder == tmp_path / "LibriTTS" / "dev-clean" and (folder / DONE_MARKER).is_file()
    assert len(list(folder.glob("1/2/*.normalized.txt"))) == 20
    assert not (tmp_path / "archives" / "dev-clean.tar.gz").exists()
    assert seen[-1] == ("dev-clean", len(data), len(data))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".extract")]
    download_libritts(tmp_path, ["dev-clean"], mirrors)  # finished subset: skipped without a request
    assert len(server.requests) == 1
    (tmp_path / "LibriTTS" / "test-clean").mkdir()
    with pytest.raises(SimVQError, match="not extracted by this tool"):
        download_libritts(tmp_path, ["test-clean"], mirrors)


# ------------------------------------------------------------------------------------------- extraction


@pytest.mark.parametrize("name", ["../evil.txt", "/tmp/abs-evil.txt", "LibriTTS/../../evil.txt"])
def test_safe_extract_rejects_path_traversal(tmp_path: Path, name: str) -> None:
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(_tar_gz({"LibriTTS/ok.txt": b"ok", name: b"evil"}))
    with pytest.raises(SimVQError, match="unsafe path"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/abs-evil.txt").exists()


def test_safe_extract_rejects_links_and_reports_corrupt_archives(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        link = tarfile.TarInfo("LibriTTS/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    (tmp_path / "link.tar.gz").write_bytes(buffer.getvalue())
    with pytest.raises(SimVQError, match="link or device"):
        safe_extract(tmp_path / "link.tar.gz", tmp_path / "out")
    (tmp_path / "junk.tar.gz").write_bytes(b"\x1f\x8b not a tar")
    with pytest.raises(SimVQError, match="cannot extract"):
        safe_extract(tmp_path / "junk.tar.gz", tmp_path / "out")


# -------------------------------------------------------------------------------------------- manifests


def _utterance(root: Path, subset: str, speaker: int, chapter: int, index: int, seconds: float, rate: int = 2000,
               normalized: str | None = "Normalized  text.", original: str = "Original text.") -> str:
    utt = f"{speaker}_{chapter}_{index:06d}_000000"
    folder = root / "LibriTTS" / subset / str(speaker) / str(chapter)
    folder.mkdir(parents=True, exist_ok=True)
    sf.write(folder / f"{utt}.wav", np.zeros(round(seconds * rate), np.int16), rate, subtype="PCM_16")
    if normalized is not None:
        (folder / f"{utt}.normalized.txt").write_text(normalized)
    (folder / f"{utt}.original.txt").write_text(original)
    return utt


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    _utterance(root, "train-clean-100", 19, 198, 0, 2.0)
    _utterance(root, "train-clean-100", 19, 198, 1, 0.3)  # too short
    _utterance(root, "train-clean-100", 26, 495, 0, 31.0)  # too long
    _utterance(root, "train-clean-360", 14, 208, 0, 1.0, normalized=None)
    _utterance(root, "dev-clean", 84, 121123, 0, 1.5)
    _utterance(root, "test-clean", 1089, 134686, 0, 3.0)
    _utterance(root, "test-clean", 1089, 134686, 1, 0.6)
    return root


def test_prepare_writes_train_dev_test(corpus: Path, tmp_path: Path) -> None:
    written = prepare_libritts(corpus, tmp_path / "manifests", ["train-clean-100", "train-clean-360"])
    assert set(written) == {"train", "dev", "test"}
    train = read_manifest(written["train"])
    assert [(e.id, e.speaker, e.split) for e in train] == [
        ("19_198_000000_000000", "19", "train-clean-100"),
        ("14_208_000000_000000", "14", "train-clean-360"),
    ]
    assert train[0].text == "Normalized text." and train[1].text == "Original text."  # fallback to original
    assert train[0].duration == pytest.approx(2.0) and train[0].sample_rate == 2000 and train[0].path.is_file()
    dev, test = read_manifest(written["dev"]), read_manifest(written["test"])
    assert [(e.speaker, e.split) for e in dev] == [("84", "dev-clean")]
    assert [e.id for e in test] == ["1089_134686_000000_000000", "1089_134686_000001_000000"]
    lines = [json.loads(x) for x in written["train"].read_text().splitlines()]
    assert all(Path(x["path"]).is_absolute() for x in lines)


def test_prepare_duration_filters_subset_choice_and_errors(corpus: Path, tmp_path: Path) -> None:
    written = prepare_libritts(corpus, tmp_path / "m", ["train-clean-100"], min_duration=0.0, max_duration=40.0,
                               relative=True)
    assert len(read_manifest(written["train"])) == 3  # all of train-clean-100, nothing of train-clean-360
    assert not Path(json.loads(written["dev"].read_text())["path"]).is_absolute()
    test = read_manifest(prepare_libritts(corpus, tmp_path / "m2", ["train-clean-100"], 1.0, 30.0)["test"])
    assert [e.duration for e in test] == [pytest.approx(3.0)]
    with pytest.raises(SimVQError, match="train-other-500: LibriTTS subset not found"):
        prepare_libritts(corpus, tmp_path / "m3", ["train-other-500"])
    with pytest.raises(SimVQError, match="unknown LibriTTS subset"):
        prepare_libritts(corpus, tmp_path / "m3", ["train-clean-1000"])
    with pytest.raises(SimVQError, match="no utterances"):
        prepare_libritts(corpus, tmp_path / "m3", ["train-clean-100"], min_duration=100.0, max_duration=200.0)
    # The folder holding LibriTTS/ or LibriTTS/ itself.
    assert read_manifest(prepare_libritts(corpus / "LibriTTS", tmp_path / "m4", ["train-clean-360"])["train"])
