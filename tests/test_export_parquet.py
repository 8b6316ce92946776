"""export-dataset --format parquet: shards that pyarrow (and so datasets' "parquet" loader) reads alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from simvq_audio.cli import main
from simvq_audio.corpus.dataset import TokenDataset
from simvq_audio.models.codec import CodecConfig, SimVQCodec
from simvq_audio.modules.seanet import SEANetConfig
from simvq_audio.quantization.builder import QuantizerConfig

pq = pytest.importorskip("pyarrow.parquet")


def tiny_model_dir(root: Path, n_q: int) -> Path:
    torch.manual_seed(0)
    config = CodecConfig(sample_rate=16000, seanet=SEANetConfig(n_filters=4, ratios=(4, 4), dimension=8, lstm=1),
                         quantizer=QuantizerConfig(codebook_size=32, dim=4, n_q=n_q))
    path = root / f"model{n_q}"
    SimVQCodec(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """Five short noise files; some lines carry extra fields (an int, a string, a nested object)."""
    root = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    lines = []
    for i, seconds in enumerate((0.05, 0.08, 0.03, 0.06, 0.04)):
        (root / "wav").mkdir(exist_ok=True)
        sf.write(root / "wav" / f"u{i}.wav", (0.1 * rng.standard_normal(int(16000 * seconds))).astype("float32"), 16000)
        line = {"path": f"wav/u{i}.wav", "duration": seconds, "speaker": f"spk{i % 2}", "text": f"words {i}"}
        if i % 2:
            line |= {"age": 30 + i, "emotion": "calm"}
        if i == 4:
            line["id"], line["tags"], line["score"] = "named-four", {"noisy": True}, "high"
        elif i == 0:
            line["score"] = 0.5  # mixed with a string above: stored as JSON text
        lines.append(json.dumps(line))
    path = root / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("n_q", [1, 2])
def test_parquet_shards_match_the_corpus(tmp_path, manifest, n_q, capsys):
    model = tiny_model_dir(tmp_path, n_q)
    out = tmp_path / "tokens"
    assert main(["export-dataset", str(manifest), "-o", str(out), "--model", str(model), "--device", "cpu",
                 "--shard-size", "2", "--format", "parquet", "-q"]) == 0
    files = sorted(out.glob("*.parquet"))
    assert [f.name for f in files] == ["shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet"]

    import pyarrow as pa

    tables = [pq.read_table(f) for f in files]
    assert all(t.schema.equals(tables[0].schema) for t in tables)  # datasets' loader needs one schema
    table = pa.concat_tables(tables)
    schema = table.schema
    assert schema.field("id").type == pa.string() and schema.field("n_frames").type == pa.int64()
    codes_type = pa.list_(pa.int32()) if n_q == 1 else pa.list_(pa.list_(pa.int32()))
    assert schema.field("codes").type == codes_type
    spec = json.loads(pq.read_schema(files[0]).metadata[b"simvq_audio"])
    dataset = TokenDataset(out)
    meta = dataset.meta
    assert spec == {"model_id": meta.model_id, "model_name": meta.model_name, "sample_rate": 16000,
                    "frame_rate": meta.frame_rate, "hop_length": 16, "codebook_size": 32, "n_codebooks": n_q,
                    "codes_layout": "n_frames" if n_q == 1 else "n_codebooks,n_frames"}

    rows = {row["id"]: row for row in table.to_pylist()}
    assert sorted(rows) == ["named-four", "wav/u0", "wav/u1", "wav/u2", "wav/u3"]
    assert len(dataset.records) == len(rows)
    for i, record in enumerate(dataset.records):
        row = rows[record.id]
        expected = dataset.read(i).numpy().T  # [n_q, T], codebooks first
        got = np.asarray(row["codes"]).reshape(n_q, -1)
        assert row["n_frames"] == record.n_frames == got.shape[1]
        np.testing.assert_array_equal(got, expected)
        assert (row["speaker"], row["text"]) == (record.speaker, record.text)
    assert rows["wav/u1"]["age"] == 31 and rows["wav/u1"]["emotion"] == "calm"
    assert rows["wav/u0"]["age"] is None and rows["wav/u2"]["emotion"] is None
    assert (rows["wav/u0"]["score"], rows["named-four"]["score"], rows["wav/u1"]["score"]) == ("0.5", '"high"', None)
    assert rows["named-four"]["tags"] == {"noisy": True} and rows["wav/u0"]["tags"] is None


def test_default_format_writes_no_parquet(tmp_path, manifest):
    model = tiny_model_dir(tmp_path, 1)
    out = tmp_path / "tokens"
    assert main(["export-dataset", str(manifest), "-o", str(out), "--model", str(model), "--device", "cpu", "-q"]) == 0
    assert not list(out.glob("*.parquet")) and (out / "meta.json").is_file()


def test_doc_example_runs(tmp_path, manifest, monkeypatch, capsys):
    import re
    import sys

    doc = Path(__file__).resolve().parents[1] / "docs" / "speech-lm.md"
    code = re.search(r"<!-- example: parquet-reader .*?-->\s*```python\n(.*?)```", doc.read_text(), re.S).group(1)
    model = tiny_model_dir(tmp_path, 2)
    out = tmp_path / "tokens"
    assert main(["export-dataset", str(manifest), "-o", str(out), "--model", str(model), "--device", "cpu",
                 "--format", "parquet", "-q"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["example.py", str(out)])
    namespace = {"__name__": "__main__"}
    exec(compile(code, f"{doc}:parquet-reader", "exec"), namespace)
    assert namespace["spec"]["n_codebooks"] == 2 and namespace["table"].num_rows == 5
    assert capsys.readouterr().out.split()[1:3] == ["2", namespace["first"]["id"]]


def test_without_pyarrow_the_export_refuses_before_encoding(tmp_path, manifest, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    out = tmp_path / "tokens"
    assert main(["export-dataset", str(manifest), "-o", str(out), "--model", str(tmp_path / "none"),
                 "--format", "parquet", "-q"]) != 0
    assert "simvq-audio[parquet]" in capsys.readouterr().err and not out.exists()
