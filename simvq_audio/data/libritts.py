"""LibriTTS (openslr resource 60): resumable verified download, safe extraction, manifests.

Layout after extraction: ``ROOT/LibriTTS/<subset>/<speaker>/<chapter>/<utt>.wav`` with ``<utt>.normalized.txt``
and ``<utt>.original.txt`` beside each file (24 kHz mono 16-bit WAV).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import math
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import SimVQError
from .manifest import ManifestEntry, build_manifest, total_hours, write_manifest

logger = logging.getLogger(__name__)

MIRRORS = (
    "https://www.openslr.org/resources/60",
    "https://us.openslr.org/resources/60",
    "https://openslr.elda.org/resources/60",
)


@dataclass(frozen=True)
class Archive:
    """One downloadable subset. ``size`` in bytes; ``None`` where no trustworthy value was found."""

    subset: str
    size: int | None
    md5: str | None
    sha256: str | None

    @property
    def filename(self) -> str:
        return f"{self.subset}.tar.gz"


# Provenance (never computed by us; we have not downloaded the corpus):
# - md5: the checksums in torchaudio's LIBRITTS dataset (<= 0.8), also used by independent download scripts that
#   verify them;
# - sha256: torchaudio's current LIBRITTS table (used by its downloader via hash_prefix);
# - size: an independent download record whose SHA-256 values equal torchaudio's. No byte size was found for
#   train-other-500 (openslr lists it as "44G"), so its size is not checked.
ARCHIVES = {
    a.subset: a
    for a in (
        Archive("dev-clean", 1291469655, "0c3076c1e5245bb3f0af7d82087ee207",
                "da0864e1bd26debed35da8a869dd5c04dfc27682921936de7cff9c8a254dbe1a"),
        Archive("test-clean", 1230670113, "7bed3bdb047c4c197f1ad3bc412db59f",
                "234ea5b25859102a87024a4b9b86641f5b5aaaf1197335c95090cde04fe9a4f5"),
        Archive("train-clean-100", 7723686890, "4a8c202b78fe1bc0c47916a98f3a2ea8",
                "c5608bf1ef74bb621935382b8399c5cdd51cd3ee47cec51f00f885a64c6c7f6b"),
        Archive("train-clean-360", 27504073644, "a84ef10ddade5fd25df69596a2767b2d",
                "ce7cff44dcac46009d18379f37ef36551123a1dc4e5c8e4eb73ae57260de4886"),
        Archive("train-other-500", None, "7b181dd5ace343a5f38427999684aa6f",
                "e35f7e34deeb2e2bdfe4403d88c8fdd5fbf64865cae41f027a185a6965f0a5df"),
    )
}
TRAIN_SUBSETS = ("train-clean-100", "train-clean-360", "train-other-500")
DEV_SUBSET = "dev-clean"
TEST_SUBSET = "test-clean"
DONE_MARKER = ".done"  # written inside LibriTTS/<subset>/ once it is fully extracted

_CHUNK_BYTES = 1 << 20
_USER_AGENT = "simvq-audio-libritts/1"


def archive_urls(subset: str, mirrors: Sequence[str] = MIRRORS) -> list[str]:
    """Download URLs of ``subset`` in the order tried (main site first, then the mirrors)."""
    if subset not in ARCHIVES:
        raise SimVQError(f"unknown LibriTTS subset {subset!r}; expected one of {', '.join(ARCHIVES)}")
    return [f"{m.rstrip('/')}/{ARCHIVES[subset].filename}" for m in mirrors]


# --------------------------------------------------------------------------------------------- download


def _fetch(url: str, part: Path, size: int | None, timeout: float, progress: Callable[[int], None] | None) -> None:
    """Append the rest of ``url`` to ``part``: an HTTP Range request from its current length (or from 0)."""
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        part.unlink()  # longer than the real file: cannot be a prefix of it
        have = 0
    if size is not None and have == size:
        return
    headers = {"User-Agent": _USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have and size is None:
            return  # nothing left past what we have; the checksum decides whether it is whole
        raise
    with response:
        if have and response.status != 206:
            have = 0  # the server ignored the Range header and sends the whole file
        expected = response.headers.get("Content-Length")
        received = 0
        with open(part, "ab" if have else "wb") as f:
            while block := response.read(_CHUNK_BYTES):
                f.write(block)
                received += len(block)
                if progress is not None:
                    progress(have + received)
    if expected is not None and received != int(expected):
        raise OSError(f"connection closed after {received} of {expected} bytes")


def file_digests(path: Path) -> tuple[str, str]:
    """``(md5, sha256)`` hex digests of a file, read once."""
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK_BYTES):
            md5.update(block)
            sha256.update(block)
    return md5.hexdigest(), sha256.hexdigest()


def verify_file(path: Path, size: int | None = None, md5: str | None = None, sha256: str | None = None) -> None:
    """Raise SimVQError naming ``path`` unless its size and digests equal those given (``None``: not checked)."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise SimVQError(f"{path}: size {actual_size} bytes, expected {size}")
    if md5 is None and sha256 is None:
        return
    actual_md5, actual_sha256 = file_digests(path)
    if md5 is not None and actual_md5 != md5.lower():
        raise SimVQError(f"{path}: MD5 {actual_md5}, expected {md5}")
    if sha256 is not None and actual_sha256 != sha256.lower():
        raise SimVQError(f"{path}: SHA-256 {actual_sha256}, expected {sha256}")


def download_file(
    urls: Sequence[str],
    dest: Path,
    size: int | None = None,
    md5: str | None = None,
    sha256: str | None = None,
    attempts: int = 3,
    timeout: float = 60.0,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Download to ``dest`` through ``dest.part``, resuming it, trying each URL in turn (``attempts`` rounds).

    The finished file is verified (size, MD5, SHA-256 where given) before it is renamed to ``dest``; a file that
    fails is deleted and SimVQError raised. An existing ``dest`` is returned as is. ``progress(bytes_so_far)``.
    """
    dest = Path(dest)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    errors = []
    for _ in range(max(1, attempts)):
        for url in urls:
            try:
                _fetch(url, part, size, timeout, progress)
                break
            except (OSError, http.client.HTTPException) as exc:  # URLError, HTTPError, timeouts, IncompleteRead
                errors.append(f"{url}: {exc}")
                logger.warning("download of %s failed (%s); trying again / the next mirror", url, exc)
        else:
            continue
        break
    else:
        raise SimVQError(f"{dest.name}: download failed from every URL; last error: {errors[-1]}")
    try:
        verify_file(part, size, md5, sha256)
    except SimVQError as exc:
        part.unlink()
        raise SimVQError(f"{exc} (corrupt download deleted; run again to fetch it anew)") from None
    os.replace(part, dest)
    return dest


# -------------------------------------------------------------------------------------------- extraction


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    name = member.name
    parts = Path(name).parts
    if name.startswith(("/", "\\")) or os.path.isabs(name) or ".." in parts or (parts and ":" in parts[0]):
        raise SimVQError(f"{archive}: unsafe path in archive: {name!r}")
    if not (member.isfile() or member.isdir()):
        raise SimVQError(f"{archive}: unsupported member type in archive (link or device): {name!r}")


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract a tar archive (any compression) into ``dest``, refusing absolute paths, ``..``, links and devices.

    Regular files and folders only; permissions and owners from the archive are not applied.
    """
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:  # streamed: a .tar.gz is read once
                _check_member(member, archive)
                target = (root / member.name).resolve()
                if target != root and root not in target.parents:
                    raise SimVQError(f"{archive}: unsafe path in archive: {member.name!r}")
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                with source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out, _CHUNK_BYTES)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise SimVQError(f"{archive}: cannot extract ({exc})") from None


def extract_subset(archive: Path, root: Path, subset: str) -> Path:
    """Extract a LibriTTS archive so that ``root/LibriTTS/<subset>`` appears complete or not at all."""
    final = root / "LibriTTS" / subset
    staging = root / f".extract-{subset}"
    if staging.exists():
        shutil.rmtree(staging)  # our own leftover from an interrupted run
    safe_extract(archive, staging)
    extracted = staging / "LibriTTS" / subset
    if not extracted.is_dir():
        raise SimVQError(f"{archive}: no LibriTTS/{subset}/ folder in the archive")
    final.parent.mkdir(parents=True, exist_ok=True)
    for extra in (staging / "LibriTTS").iterdir():  # README, SPEAKERS.txt, ...: same in every subset
        if extra.name != subset and not (final.parent / extra.name).exists():
            os.replace(extra, final.parent / extra.name)
    os.replace(extracted, final)
    (final / DONE_MARKER).write_text("extracted\n")
    shutil.rmtree(staging)
    return final


def download_libritts(
    root: str | os.PathLike,
    subsets: Sequence[str],
    mirrors: Sequence[str] = MIRRORS,
    keep_archives: bool = False,
    verify: bool = True,
    progress: Callable[[str, int, int | None], None] | None = None,
) -> list[Path]:
    """Download and extract ``subsets`` under ``root`` (``root/LibriTTS/<subset>``); finished subsets are skipped.

    Returns the subset folders. ``progress(subset, bytes_so_far, total_or_None)``. ``verify=False`` skips the
    size and checksum checks (for mirrors that repackaged the files).
    """
    root = Path(root)
    folders = []
    for subset in subsets:
        archive_info = ARCHIVES.get(subset)
        if archive_info is None:
            raise SimVQError(f"unknown LibriTTS subset {subset!r}; expected one of {', '.join(ARCHIVES)}")
        final = root / "LibriTTS" / subset
        if (final / DONE_MARKER).exists():
            logger.info("%s: already extracted, skipped", final)
            folders.append(final)
            continue
        if final.exists():
            raise SimVQError(
                f"{final}: exists but was not extracted by this tool; delete it to download again, "
                f"or create {final / DONE_MARKER} to use it as is"
            )
        archive = root / "archives" / archive_info.filename
        report = None if progress is None else (lambda n, s=subset, t=archive_info.size: progress(s, n, t))
        download_file(
            archive_urls(subset, mirrors),
            archive,
            size=archive_info.size if verify else None,
            md5=archive_info.md5 if verify else None,
            sha256=archive_info.sha256 if verify else None,
            progress=report,
        )
        folders.append(extract_subset(archive, root, subset))
        if not keep_archives:
            archive.unlink()
    return folders


# -------------------------------------------------------------------------------------------- manifests


def find_corpus(root: str | os.PathLike) -> Path:
    """The ``LibriTTS`` folder: ``root/LibriTTS`` or ``root`` itself."""
    root = Path(root)
    return root / "LibriTTS" if (root / "LibriTTS").is_dir() else root


def subset_entries(
    root: str | os.PathLike, subset: str, min_duration: float = 0.5, max_duration: float = 30.0
) -> list[ManifestEntry]:
    """Manifest entries of one extracted subset: speaker from the file name, normalized text (else original),
    ``split`` = the subset name, ``id`` = the utterance name; durations filtered to [min, max] seconds."""
    folder = find_corpus(root) / subset
    if not folder.is_dir():
        raise SimVQError(f"{folder}: LibriTTS subset not found (run the download stage first)")
    entries = build_manifest(folder, min_duration, max_duration, speaker_from="filename", split=subset)
    for entry in entries:
        entry.id = entry.path.stem
        if entry.text is None:
            original = entry.path.with_name(entry.path.stem + ".original.txt")
            if original.is_file():
                entry.text = " ".join(original.read_text(encoding="utf-8").split())
    return entries


def prepare_libritts(
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    train_subsets: Sequence[str] = TRAIN_SUBSETS,
    min_duration: float = 0.5,
    max_duration: float = 30.0,
    relative: bool = False,
) -> dict[str, Path]:
    """Write ``train.jsonl`` (``train_subsets``), ``dev.jsonl`` (dev-clean) and ``test.jsonl`` (test-clean).

    Duration limits (seconds) apply to every manifest. Returns ``{"train": path, "dev": path, "test": path}``.
    """
    if not train_subsets:
        raise SimVQError("no training subsets given")
    if min_duration < 0 or max_duration < min_duration or math.isnan(max_duration):
        raise SimVQError(f"bad duration range [{min_duration}, {max_duration}]")
    plan = {"train": list(train_subsets), "dev": [DEV_SUBSET], "test": [TEST_SUBSET]}
    for subset in (s for subsets in plan.values() for s in subsets):
        if subset not in ARCHIVES:
            raise SimVQError(f"unknown LibriTTS subset {subset!r}; expected one of {', '.join(ARCHIVES)}")
    out_dir = Path(out_dir)
    written = {}
    for name, subsets in plan.items():
        entries = [e for s in subsets for e in subset_entries(root, s, min_duration, max_duration)]
        if not entries:
            raise SimVQError(f"{name}: no utterances between {min_duration} and {max_duration} s in {', '.join(subsets)}")
        path = out_dir / f"{name}.jsonl"
        write_manifest(path, entries, relative=relative)
        speakers = len({e.speaker for e in entries})
        logger.info("%s: %d utterances, %d speakers, %.1f h", path, len(entries), speakers, total_hours(entries))
        written[name] = path
    return written
