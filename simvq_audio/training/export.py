"""Release a trained model: the EMA generator of a checkpoint, without discriminators.

The checkpoint's ``ema/`` folder is already a model folder (``config.json`` +
``model.safetensors``); exporting loads it strictly (hash checked), optionally stores it
in half precision, and writes it with the training config next to it for provenance.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch

from ..errors import SimVQError
from ..models.codec import SimVQCodec
from .checkpoint import CONFIG_NAME, EMA_DIR, find_checkpoint

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def export_checkpoint(checkpoint: str | os.PathLike, output: str | os.PathLike, dtype: str = "float32") -> str:
    """Write the EMA model of ``checkpoint`` (a checkpoint, checkpoints folder or run folder) to ``output``.

    Returns the exported model's id. ``output`` must not exist or be an empty folder or a
    model folder (its files are replaced); it is filled in a temporary folder first.
    """
    if dtype not in DTYPES:
        raise SimVQError(f"--dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    ckpt = find_checkpoint(checkpoint)
    source = ckpt / EMA_DIR
    output = Path(output)
    if output.resolve() == source.resolve() or source.resolve() in output.resolve().parents:
        raise SimVQError(f"{output}: output path is inside the checkpoint being exported")
    if output.exists() and (not output.is_dir() or (any(output.iterdir()) and not (output / "config.json").exists())):
        raise SimVQError(f"{output}: exists and is not an empty folder or a model folder")
    model = SimVQCodec.from_pretrained(source)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
    try:
        model_id = model.save_pretrained(tmp, dtype=DTYPES[dtype])
        if (ckpt / CONFIG_NAME).is_file():
            shutil.copyfile(ckpt / CONFIG_NAME, tmp / CONFIG_NAME)
        if output.exists():
            for item in tmp.iterdir():
                os.replace(item, output / item.name)
            tmp.rmdir()
        else:
            os.replace(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return model_id
