"""Named parts of a codec, for staged training: freeze some, or start some from a release.

A stage may train the decoder alone on the tokens of a fixed encoder and quantizer
(``training.freeze: [encoder, quantizer]``), or give a new decoder the encoder and
quantizer of a released model (``training.init_parts: [encoder, quantizer]``).
"""

from __future__ import annotations

from torch import nn

from ..models.codec import SimVQCodec

# part -> the codec's submodules it covers. The projection into the lookup goes with the
# encoder; the one out of it (codes -> the latents that the pitch head and the decoder read)
# with the quantizer, so a new decoder started on a release's encoder and quantizer reads
# the same latents as that release's pitch head.
PARTS: dict[str, tuple[str, ...]] = {
    "encoder": ("encoder", "in_proj", "pitch_proj"),
    "quantizer": ("quantizer", "out_proj"),
    "decoder": ("decoder", "harmonic"),
    "pitch_head": ("pitch_head",),
}
# part -> the CodecConfig fields its weights depend on.
PART_CONFIG_KEYS: dict[str, tuple[str, ...]] = {
    "encoder": ("sample_rate", "seanet"),
    "quantizer": ("quantizer", "seanet"),  # out_proj maps the lookup to seanet.dimension
    "decoder": ("sample_rate", "decoder"),
    "pitch_head": ("pitch_head", "pitch_head_width", "pitch_head_kernel", "pitch_head_layers"),
}


def check_parts(names: tuple[str, ...] | list[str], key: str) -> None:
    """Raise ``ValueError`` naming ``key`` when a name is not a part."""
    unknown = [n for n in names if n not in PARTS]
    if unknown:
        raise ValueError(f"{key}: unknown part {unknown[0]!r}; parts are {', '.join(PARTS)}")


def part_modules(codec: SimVQCodec, names: tuple[str, ...] | list[str]) -> dict[str, nn.Module]:
    """The submodules (by attribute name) that the parts ``names`` cover."""
    check_parts(names, "parts")
    modules = {attr: getattr(codec, attr) for name in names for attr in PARTS[name]}
    return {attr: m for attr, m in modules.items() if m is not None}  # a codec without a pitch head


def freeze(codec: SimVQCodec, names: tuple[str, ...] | list[str]) -> int:
    """Stop gradients to the parts ``names``; returns how many parameters were frozen.

    Frozen parameters get no gradient, so the optimiser (built from the parameters that
    still require one) never moves them, and autograd records nothing inside a frozen
    encoder: its backward pass costs nothing.
    """
    frozen = 0
    for module in part_modules(codec, names).values():
        for p in module.parameters():
            frozen += p.numel()
            p.requires_grad_(False)
    return frozen
