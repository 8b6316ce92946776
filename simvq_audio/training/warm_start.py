"""Warm start: begin a new run from a released model's weights.

A release model (``config.json`` + ``model.safetensors``, e.g. the built-in ``default`` or
a checkpoint's ``ema/`` folder) holds the generator only. A run started from it gets
those weights; discriminators, optimisers, schedule and step begin afresh. This is how
training continues when a run's full state is gone, and how a released model is
fine-tuned on new data. Resuming a checkpoint of the run itself takes precedence.
"""

from __future__ import annotations

import os

from ..dataclass_dicts import differences, to_dict
from ..models.codec import SimVQCodec
from ..models.pretrained import resolve_model_dir
from .checkpoint import CheckpointError
from .parts import PART_CONFIG_KEYS, part_modules

# Submodules a part may have that the model it starts from lacks; they keep their own
# (zero) initialisation: the decoder's excitation inputs.
GROWN_PREFIXES = ("inject.",)


def warm_start(generator: SimVQCodec, model_dir: str | os.PathLike, parts: tuple[str, ...] = ()) -> str:
    """Copy a release model's weights into ``generator``; returns the model's id.

    ``parts`` (``encoder``, ``quantizer``, ``decoder``; empty: the whole model) limits the
    copy, e.g. to give a new decoder the encoder and quantizer of a release. The config
    fields those parts depend on must equal ``generator.config``'s (the ``name`` may
    differ); otherwise ``CheckpointError`` lists the differing keys. Loading is strict,
    except that a part may have grown modules its source lacks (the encoder's pitch
    projection, the decoder's excitation inputs): they keep their zero initialisation, so
    the new model starts out computing exactly what the source did.
    """
    source = SimVQCodec.from_pretrained(model_dir)  # strict, id-verified; raises ModelLoadError naming the path
    keys = None if not parts else {k for p in parts for k in PART_CONFIG_KEYS[p]}
    ours = {k: v for k, v in to_dict(generator.config).items() if k != "name" and (keys is None or k in keys)}
    theirs = {k: v for k, v in to_dict(source.config).items() if k != "name" and (keys is None or k in keys)}
    diff = differences(theirs, ours, ("model", "config"))
    if diff:
        what = "its architecture" if not parts else f"the architecture of its {', '.join(parts)}"
        raise CheckpointError(f"{resolve_model_dir(model_dir)}: cannot start from this model, {what} "
                              f"differs from model.* of the config: {'; '.join(diff)}")
    if not parts:
        generator.load_state_dict(source.state_dict(), strict=True)  # copies in place, on generator's device
        return source.model_id
    theirs_modules = part_modules(source, parts)
    for attr, module in part_modules(generator, parts).items():
        if attr not in theirs_modules:  # e.g. the pitch projection of an encoder that had none
            continue
        result = module.load_state_dict(theirs_modules[attr].state_dict(), strict=False)
        grown = [k for k in result.missing_keys if not k.startswith(GROWN_PREFIXES)]
        if grown or result.unexpected_keys:
            raise CheckpointError(f"{resolve_model_dir(model_dir)}: its {attr} does not match the config's: "
                                  f"missing {grown}, unexpected {result.unexpected_keys}")
    return source.model_id
