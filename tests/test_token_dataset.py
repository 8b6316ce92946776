"""TokenDataset over a corpus with known codes (written by the exporter from a stand-in tokenizer)."""

from __future__ import annotations

import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from simvq_audio.corpus import TokenDataset
from simvq_audio.corpus.dataset import collate, flatten_codebooks, unflatten_codebooks
from simvq_audio.corpus.format import ShardFiles
from simvq_audio.corpus.plan import CorpusEntry, plan_shards
from simvq_audio.corpus.writer import write_corpus
from simvq_audio.errors import SimVQError, TokenFileError
from simvq_audio.models.spec import ModelSpec

LENGTHS = (5, 12, 3, 20, 8, 6, 1)  # frames per utterance
SPLITS = ("train", "dev", "train", "train", "dev", "train", "train")


def known_codes(u: int, n_frames: int, n_q: int, k: int) -> np.ndarray:
    """``[n_q, T]`` codes that identify utterance, frame and codebook."""
    t = np.arange(n_frames)[None, :]
    q = np.arange(n_q)[:, None]
    return (k - 1 - (u * 1009 + t * 31 + q * 7) % k).astype(np.int64)  # near K: exercises uint32


class FakeTokenizer:
    """Yields ``TokenFile``-like results in reverse order, as the real one may reorder."""

    def __init__(self, n_q: int, k: int):
        self.n_q, self.k = n_q, k

    def encode_files(self, paths, batch_size=None):
        for path in reversed(list(paths)):
            u = int(Path(path).stem)
            header = SimpleNamespace(original_n_samples=LENGTHS[u] * 320, original_sample_rate=16000)
            yield Path(path), SimpleNamespace(header=header, codes=known_codes(u, LENGTHS[u], self.n_q, self.k))


def make_corpus(out: Path, n_q: int = 3, k: int = 50, shard_size: int = 3) -> Path:
    info = ModelSpec("fake", "fake", 16000, 50.0, 320, k, n_q)
    entries = [CorpusEntry(path=Path(f"/data/{u}.wav"), source=f"{u}.wav", id=f"u{u}", speaker=f"s{u % 2}",
                           split=SPLITS[u]) for u in range(len(LENGTHS))]
    plan = plan_shards(entries, info, "/data", shard_size=shard_size)
    write_corpus(FakeTokenizer(n_q, k), plan, out)
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("tokens") / "corpus")


def expected_windows(window: int, stride: int) -> list[tuple[int, int, int]]:
    rows = []
    for u, t in enumerate(LENGTHS):
        if t <= window:
            rows.append((u, 0, t))
            continue
        starts = list(range(0, t - window + 1, stride))
        if starts[-1] + window < t:
            starts.append(t - window)
        rows += [(u, s, window) for s in starts]
    return rows


def test_utterances_round_trip(corpus):
    ds = TokenDataset(corpus, return_meta=True)
    assert len(ds) == len(LENGTHS) and ds.n_codebooks == 3 and ds.codebook_size == 50
    for u, (codes, meta) in enumerate(ds):
        assert codes.dtype == torch.long and codes.shape == (LENGTHS[u], 3)
        assert torch.equal(codes, torch.from_numpy(known_codes(u, LENGTHS[u], 3, 50).T))
        assert (meta["id"], meta["speaker"], meta["utterance"], meta["start"]) == (f"u{u}", f"s{u % 2}", u, 0)
    assert torch.equal(ds[-1][0], ds[len(ds) - 1][0])
    with pytest.raises(IndexError):
        ds[len(ds)]


@pytest.mark.parametrize(("window", "stride"), [(6, None), (6, 4), (4, 1), (25, None)])
def test_windows_cover_every_frame(corpus, window, stride):
    ds = TokenDataset(corpus, window=window, stride=stride, return_meta=True)
    rows = expected_windows(window, stride or window)
    assert len(ds) == len(rows)
    assert ds.lengths.tolist() == [n for _, _, n in rows]
    seen = [np.zeros(t, bool) for t in LENGTHS]
    for (codes, meta), (u, start, n) in zip(ds, rows, strict=True):
        assert (meta["utterance"], meta["start"]) == (u, start)
        full = known_codes(u, LENGTHS[u], 3, 50).T
        assert torch.equal(codes, torch.from_numpy(full[start:start + n]))
        assert n == window or n == LENGTHS[u] < window
        seen[u][start:start + n] = True
    assert all(s.all() for s in seen)


def test_codebook_subset_and_split(corpus, tmp_path):
    ds = TokenDataset(corpus, window=4, n_codebooks=1)
    assert ds[0].shape == (4, 1) and torch.equal(ds[0][:, 0], torch.from_numpy(known_codes(0, 4, 1, 50)[0]))
    dev = TokenDataset(corpus, split="dev", return_meta=True)
    assert [m["id"] for _, m in dev] == ["u1", "u4"]
    assert len(TokenDataset(corpus.parent, split="corpus")) == len(LENGTHS)  # ROOT/SPLIT folder
    with pytest.raises(SimVQError, match="no folder 'test'"):
        TokenDataset(corpus, split="test")
    for kwargs in ({"n_codebooks": 4}, {"window": 0}, {"stride": 2}):
        with pytest.raises(ValueError):
            TokenDataset(corpus, **kwargs)


def test_collate_pads_and_masks(corpus):
    ds = TokenDataset(corpus, window=6, return_meta=True)
    short = [i for i in range(len(ds)) if ds.lengths[i] < 6]
    items = [ds[short[0]], ds[int(np.argmax(ds.lengths))], ds[short[1]]]
    batch = collate(items, pad_value=-1)
    lengths = [c.shape[0] for c, _ in items]
    assert batch["codes"].shape == (3, 6, 3) and batch["lengths"].tolist() == lengths
    assert batch["mask"].sum(1).tolist() == lengths
    for b, (codes, _) in enumerate(items):
        assert torch.equal(batch["codes"][b, : lengths[b]], codes)
        assert (batch["codes"][b, lengths[b]:] == -1).all()
    assert [m["id"] for m in batch["meta"]] == [m["id"] for _, m in items]
    assert set(collate([ds[0][0]])) == {"codes", "mask", "lengths"}


def test_flatten_interleaves_codebooks():
    codes = torch.tensor([[[1, 2, 3], [4, 5, 6]]])  # [B=1, T=2, n_q=3]
    assert flatten_codebooks(codes).tolist() == [[1, 2, 3, 4, 5, 6]]
    shifted = flatten_codebooks(codes, codebook_size=10)
    assert shifted.tolist() == [[1, 12, 23, 4, 15, 26]]
    assert torch.equal(unflatten_codebooks(shifted, 3, codebook_size=10), codes)
    with pytest.raises(ValueError):
        unflatten_codebooks(shifted, 4)


def test_dataloader_with_workers_and_pickling(corpus):
    ds = TokenDataset(corpus, window=5, stride=3)
    _ = ds[0]  # opens a memory map in this process
    assert ds._maps and not pickle.loads(pickle.dumps(ds))._maps
    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate)
    got = torch.cat([b["codes"][m] for b in loader for m in [b["mask"]]])
    assert torch.equal(got, torch.cat([ds[i] for i in range(len(ds))]))


def test_uint32_codes_for_large_codebooks(tmp_path):
    out = make_corpus(tmp_path / "big", n_q=1, k=70000, shard_size=10)
    assert (out / "meta.json").read_text().count('"uint32"') == 1
    ds = TokenDataset(out)
    assert int(ds[3].max()) > 65535
    assert torch.equal(ds[3], torch.from_numpy(known_codes(3, 20, 1, 70000).T))


def test_damaged_corpus_is_an_error(tmp_path):
    out = make_corpus(tmp_path / "c")
    with open(ShardFiles.of(out, 1).bin, "r+b") as f:
        f.truncate(10)
    with pytest.raises(TokenFileError, match="shard-00001.bin"):
        TokenDataset(out)
    with pytest.raises(TokenFileError, match="not an exported token corpus"):
        TokenDataset(tmp_path)
