"""``simvq-audio info FILE_OR_MODEL``: the header of a ``.svqt`` token file, or a model's config and size."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = ("show a .svqt token file's header (after checking the whole file: payload length and code range), "
        "or a model folder's config, id, bitrate and size")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="FILE_OR_MODEL_DIR",
                        help="a .svqt token file, a model folder, a built-in model name (e.g. default), or a Hugging Face "
                             "Hub repo id org/name")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def token_info(path: Path) -> dict:
    """Header fields of a token file plus derived figures (duration, bitrate); the whole file is
    validated first (``read_tokens``), so a truncated or corrupt payload is an error, not a header."""
    import math

    from ..tokens.format import read_tokens

    header = read_tokens(path).header
    info = {"kind": "token file", "path": str(path), **header.to_dict()}
    info["duration_seconds"] = round(header.duration, 3)
    info["original_duration_seconds"] = round(header.original_n_samples / header.original_sample_rate, 3)
    info["bitrate_bps"] = round(header.n_codebooks * math.log2(header.codebook_size) * header.frame_rate, 2)
    return info


def model_info(name_or_dir: str) -> dict:
    """Spec, config and size of a model folder (loaded, so the id is verified against the weights)."""
    from dataclasses import asdict

    from ..dataclass_dicts import to_dict
    from ..models.codec import SimVQCodec
    from ..models.pretrained import WEIGHTS_NAME, model_folder, read_model_meta

    model = SimVQCodec.from_pretrained(name_or_dir)
    directory = model_folder(name_or_dir)
    meta = read_model_meta(directory)

    def count(module) -> int:
        return sum(p.numel() for p in module.parameters())

    return {
        "kind": "model",
        "path": str(directory),
        **asdict(model.spec),
        "channels": model.channels,
        "bitrate_bps": round(model.bitrate, 2),
        "parameters": count(model),
        "parameters_encoder": count(model.encoder) + count(model.in_proj),
        "parameters_decoder": count(model.decoder) + count(model.out_proj),
        "parameters_quantizer": count(model.quantizer),
        "stored_dtype": meta.get("dtype"),
        "weights_bytes": (directory / WEIGHTS_NAME).stat().st_size,
        "config": to_dict(model.config),
    }


def _is_model(text: str) -> bool:
    from ..models.pretrained import BUILTIN_MODELS, is_hub_repo_id

    path = Path(text)
    # A missing "dir/file.svqt" has the form of a Hub repo id too; it is a token file that is not there.
    hub_name = not path.exists() and is_hub_repo_id(text) and path.suffix.lower() != ".svqt"
    return text in BUILTIN_MODELS or path.is_dir() or hub_name


def format_info(info: dict) -> str:
    """Aligned ``key: value`` lines; nested dicts (the model config) as indented JSON."""
    width = max(len(k) for k in info)
    lines = []
    for key, value in info.items():
        if isinstance(value, dict):
            text = json.dumps(value, indent=2).replace("\n", "\n" + " " * (width + 2))
        elif isinstance(value, float):
            text = f"{value:g}"
        elif key.startswith(("parameters", "weights_bytes")):
            text = f"{value:,}"
        else:
            text = str(value)
        lines.append(f"{key:<{width}}  {text}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    info = model_info(args.path) if _is_model(args.path) else token_info(Path(args.path))
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0
