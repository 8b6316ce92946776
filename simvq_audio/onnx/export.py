"""Export a codec to ``encoder.onnx`` and ``decoder.onnx`` with dynamic batch and length.

The folder also gets the model's ``config.json`` (its id included) and ``onnx.json``: what the
graphs take and give, their shortest input, the exporter and opset, so ``runtime.OnnxCodec`` needs
neither torch nor the weights.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from .graphs import DecoderGraph, EncoderGraph, PitchGraph, min_frames, min_samples

ENCODER_FILE, DECODER_FILE, MANIFEST_FILE, CONFIG_FILE = "encoder.onnx", "decoder.onnx", "onnx.json", "config.json"
PITCH_FILE = "pitch.onnx"
FORMAT, FORMAT_VERSION = "simvq-audio-onnx", 2
READABLE_VERSIONS = (1, 2)  # 1: no pitch graph, no window inputs (windows restart the harmonics' phase)
OPSET = 17
EXPORTERS = ("torchscript", "dynamo")


def _export(graph: nn.Module, examples: tuple[torch.Tensor, ...], path: Path, names: tuple[list[str], list[str]],
            axes: dict[str, dict[int, str]], exporter: str) -> None:
    """One graph to ``path``; ``names`` are its inputs' and outputs', ``axes`` the dynamic axes of each."""
    inputs, outputs = names
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about shape checks that hold for every length
        if exporter == "torchscript":
            torch.onnx.export(graph, examples, str(path), input_names=inputs, output_names=outputs,
                              dynamic_axes=axes, opset_version=OPSET, dynamo=False)
        else:
            shapes = tuple({i: torch.export.Dim.AUTO for i in axes[name]} for name in inputs)
            program = torch.onnx.export(graph, examples, input_names=inputs, output_names=outputs,
                                        dynamic_shapes=shapes, opset_version=max(OPSET, 18), dynamo=True,
                                        verbose=False)
            program.save(str(path))


def export_onnx(codec: nn.Module, directory: str | os.PathLike, model_dir: str | os.PathLike | None = None,
                exporter: str = "torchscript") -> dict:
    """Write ``encoder.onnx``, ``decoder.onnx``, ``config.json`` and ``onnx.json`` to ``directory``.

    Args:
        codec: a ``SimVQCodec`` (any device or dtype; the graphs are float32 on the CPU).
        model_dir: the model folder ``codec`` was loaded from; its ``config.json`` is copied as is
            (else the codec's config is written through ``save_pretrained`` to a temporary folder).
        exporter: ``"torchscript"`` (``torch.onnx.export(dynamo=False)``, the default: it exports
            the graphs in seconds with dynamic axes) or ``"dynamo"`` (``torch.export``).

    Returns:
        The manifest written to ``onnx.json``.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    codec = codec.eval()
    model_id = codec.model_id
    hop, t0 = codec.hop_length, max(min_frames(codec), 4)
    encoder, decoder = EncoderGraph(codec).eval(), DecoderGraph(codec).eval()
    # Two items of different content, lengths not a multiple of the hop: nothing specialises on them.
    audio = torch.randn(2, codec.channels, (t0 + 3) * hop - hop // 3) * 0.1
    with torch.no_grad():
        codes = encoder(audio)
    _export(encoder, (audio,), directory / ENCODER_FILE, (["audio"], ["codes"]),
            {"audio": {0: "batch", 2: "samples"}, "codes": {0: "batch", 2: "frames"}}, exporter)
    extra = {"phase_offset": torch.tensor([0.5, 4.0]), "start_frame": torch.tensor([0, 123])}
    extra = {name: extra[name] for name in decoder.extra_inputs}
    _export(decoder, (codes, *extra.values()), directory / DECODER_FILE, (["codes", *extra], ["audio"]),
            {"codes": {0: "batch", 2: "frames"}, "audio": {0: "batch", 2: "samples"},
             **{name: {0: "batch"} for name in extra}}, exporter)
    if decoder.takes_phase_offset:
        _export(PitchGraph(codec).eval(), (codes,), directory / PITCH_FILE, (["codes"], ["f0", "voicing"]),
                {"codes": {0: "batch", 2: "frames"}, "f0": {0: "batch", 1: "frames"},
                 "voicing": {0: "batch", 1: "frames"}}, exporter)
    config_path = None if model_dir is None else Path(model_dir) / CONFIG_FILE
    if config_path is not None and config_path.is_file():
        shutil.copyfile(config_path, directory / CONFIG_FILE)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            codec.save_pretrained(tmp)
            shutil.copyfile(Path(tmp) / CONFIG_FILE, directory / CONFIG_FILE)
    stored_id = json.loads((directory / CONFIG_FILE).read_text()).get("model_id", model_id)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_id": stored_id,
        "sample_rate": codec.sample_rate,
        "channels": codec.channels,
        "hop_length": hop,
        "n_codebooks": codec.n_codebooks,
        "codebook_size": codec.codebook_size,
        "min_samples": min_samples(codec),
        "min_frames": min_frames(codec),
        "encoder": {"file": ENCODER_FILE, "input": "audio [B, C, N] float32",
                    "output": "codes [B, n_q, ceil(N / hop)] int64"},
        "decoder": {"file": DECODER_FILE, "input": "codes [B, n_q, T] int64",
                    "output": "audio [B, C, T * hop] float32",
                    **({"phase_offset": "phase_offset [B] float32: radians where the harmonics' running phase "
                                        "starts (a window's, to continue a longer item's)"}
                       if decoder.takes_phase_offset else {}),
                    **({"start_frame": "start_frame [B] int64: the window's first frame in its item "
                                       "(the noise phase's frame index)"} if decoder.takes_start_frame else {}),
                    **({"soft_voicing": True} if decoder.soft_voicing else {})},
        **({"pitch": {"file": PITCH_FILE, "input": "codes [B, n_q, T] int64",
                      "output": "f0 [B, T] Hz, voicing [B, T] probability, float32"}}
           if decoder.takes_phase_offset else {}),
        "exporter": exporter,
        "opset": OPSET if exporter == "torchscript" else max(OPSET, 18),
        "torch": torch.__version__,
    }
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
