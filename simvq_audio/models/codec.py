"""The SimVQ codec: SEANet encoder, projection, SimVQ bottleneck, SEANet or Vocos-style decoder."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..dataclass_dicts import from_dict
from ..modules.conv import frame_mask
from ..modules.excitation import harmonic_excitation, harmonic_sum, voicing_amplitude
from ..modules.harmonic import HarmonicBranch
from ..modules.pitch_head import PitchHead, head_shape_problem
from ..modules.seanet import SEANetConfig, SEANetDecoder, SEANetEncoder
from ..modules.vocos import DecoderConfig, VocosDecoder
from ..modules.yin import octaves, yin
from ..quantization.builder import QuantizerConfig, build_quantizer
from .pretrained import load_pretrained, model_id, save_pretrained
from .spec import ModelSpec


@dataclass(frozen=True)
class CodecConfig:
    """Everything needed to rebuild a codec; stored with its weights as ``config.json``.

    ``teacher_forcing``: in training, the decoder's sines follow YIN's F0 of the input (``True``) or,
    as at decode time, the pitch head's F0 read off the codes (``False``: the decoder learns to render
    the F0 it will be given). ``soft_voicing``: where the sines follow the pitch head, their amplitude is
    its voicing probability (``True``) or 1 where it is above 0.5 and 0 elsewhere (``False``); soft, the
    frames the head is unsure of keep some harmonics at its F0 instead of none. ``pitch_head_width``,
    ``pitch_head_kernel``, ``pitch_head_layers``: the pitch head's channels, kernel (frames) and number of
    convolutions (``modules/pitch_head.py``).
    """

    sample_rate: int = 24000
    seanet: SEANetConfig = field(default_factory=SEANetConfig)
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    name: str = "simvq-codec"
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    pitch_head: bool = False
    pitch_features: bool = False
    excitation_harmonics: int = 0
    harmonic_branch: int = 0
    teacher_forcing: bool = True
    soft_voicing: bool = False
    pitch_head_width: int = 64
    pitch_head_kernel: int = 3
    pitch_head_layers: int = 1

    def __post_init__(self) -> None:
        problem = head_shape_problem(self.pitch_head_width, self.pitch_head_kernel, self.pitch_head_layers)
        if problem:
            raise ValueError(f"pitch_head_width, pitch_head_kernel, pitch_head_layers: {problem}")
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        if self.excitation_harmonics < 0 or self.harmonic_branch < 0:
            raise ValueError("excitation_harmonics and harmonic_branch must be >= 0")
        if (self.excitation_harmonics or self.harmonic_branch) and not self.pitch_head:
            raise ValueError("excitation_harmonics and harmonic_branch need pitch_head: true "
                             "(decoding reads the F0 off the codes)")
        if self.harmonic_branch and self.seanet.channels != 1:
            raise ValueError("harmonic_branch is mono; seanet.channels must be 1")
        if self.decoder.kind == "vocos" and self.seanet.channels != 1:
            raise ValueError(f"the vocos decoder is mono; seanet.channels is {self.seanet.channels}")

    @property
    def decoder_sines(self) -> int:
        """Sines at F0 .. K F0 a SEANet decoder adds after each upsampling: ``excitation_harmonics`` with that decoder."""
        return 0 if self.decoder.kind == "vocos" else self.excitation_harmonics

    @property
    def source_harmonics(self) -> int:
        """Harmonics summed into a Vocos decoder's source-filter head: ``excitation_harmonics`` with that decoder."""
        return self.excitation_harmonics if self.decoder.kind == "vocos" else 0


def build_decoder(config: CodecConfig) -> nn.Module:
    """The decoder ``config.decoder.kind`` names: latents ``[B, D, T]`` -> audio ``[B, C, T * hop]``."""
    if config.decoder.kind == "vocos":
        return VocosDecoder(config.seanet.dimension, config.seanet.hop_length, config.decoder,
                            source=bool(config.source_harmonics))
    return SEANetDecoder(config.seanet, excitation_channels=config.decoder_sines)


@dataclass
class CodecOutput:
    """Result of ``SimVQCodec.forward``.

    Attributes:
        audio: ``[B, C, N]`` reconstruction, same length as the input.
        codes: ``[B, n_q, T]`` with ``T = ceil(N / hop_length)``.
        codebook_loss, commitment_loss: scalars (unweighted, see ``QuantizerOutput``).
        quantizer_loss: scalar, ``codebook_loss + beta * commitment_loss``.
        metrics: detached scalars from the quantizer (perplexity, usage).
        frame_mask: ``[B, T]`` true for each item's real frames when ``lengths`` was given, else ``None``.
        pitch: ``[B, 2, T]`` the pitch head's output (voicing logit, log2(F0 / 100 Hz)), when the
            codec has one (``CodecConfig.pitch_head``), else ``None``.
        input_pitch: YIN's ``(f0 [B, T] Hz, voiced [B, T])`` of the input, when the codec computed it
            (pitch features or harmonics), so the pitch loss need not run YIN again.
        latents: ``[B, d, T]`` the quantizer's input (the lookup space), with its gradient, for losses
            on how the latents fill that space (``loss.spread``).
        codebook: ``[K, d]`` the first codebook as the quantizer's search saw it, without gradient
            (``QuantizerOutput.codebook``), for ``loss.match``.
    """

    audio: torch.Tensor
    codes: torch.Tensor
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor
    quantizer_loss: torch.Tensor
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    frame_mask: torch.Tensor | None = None
    pitch: torch.Tensor | None = None
    input_pitch: tuple[torch.Tensor, torch.Tensor] | None = None
    latents: torch.Tensor | None = None
    codebook: torch.Tensor | None = None


class SimVQCodec(nn.Module):
    """Neural audio codec with a SimVQ bottleneck.

    ``encode(wav [B, C, N]) -> codes [B, n_q, ceil(N / hop)]`` and
    ``decode(codes, length) -> wav [B, C, length]``; ``decode(encode(x), N)`` has exactly
    ``N`` samples for any ``N >= 1``.
    """

    def __init__(self, config: CodecConfig):
        super().__init__()
        self.config = config
        self.encoder = SEANetEncoder(config.seanet)
        self.decoder = build_decoder(config)
        latent, qdim = config.seanet.dimension, config.quantizer.dim
        self.in_proj: nn.Module = nn.Conv1d(latent, qdim, 1) if latent != qdim else nn.Identity()
        self.out_proj: nn.Module = nn.Conv1d(qdim, latent, 1) if latent != qdim else nn.Identity()
        self.quantizer = build_quantizer(config.quantizer)
        self.pitch_head = PitchHead(latent, config.pitch_head_width, config.pitch_head_kernel,
                                    config.pitch_head_layers) if config.pitch_head else None
        self.harmonic: HarmonicBranch | None = None
        if config.harmonic_branch:
            self.harmonic = HarmonicBranch(latent, config.harmonic_branch, config.seanet.hop_length)
        # The encoder's DSP pitch features (YIN voicing and log-F0) enter the lookup space
        # through a map that starts at zero: a warm-started model's codes do not move at first.
        self.pitch_proj: nn.Module | None = None
        if config.pitch_features:
            self.pitch_proj = nn.Conv1d(2, qdim, 1)
            nn.init.zeros_(self.pitch_proj.weight)
            nn.init.zeros_(self.pitch_proj.bias)

    # -- properties ------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def channels(self) -> int:
        return self.config.seanet.channels

    @property
    def hop_length(self) -> int:
        """Samples per frame."""
        return self.config.seanet.hop_length

    @property
    def frame_rate(self) -> float:
        """Frames (tokens per codebook) per second."""
        return self.sample_rate / self.hop_length

    @property
    def codebook_size(self) -> int:
        return self.config.quantizer.codebook_size

    @property
    def n_codebooks(self) -> int:
        return self.config.quantizer.n_q

    @property
    def bitrate(self) -> float:
        """Bits per second at full bitrate: ``n_codebooks * log2(codebook_size) * frame_rate``."""
        return self.n_codebooks * math.log2(self.codebook_size) * self.frame_rate

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def num_frames(self, n_samples: int) -> int:
        """Frames for ``n_samples`` samples: ``ceil(n_samples / hop_length)``."""
        return -(-int(n_samples) // self.hop_length)

    @property
    def model_id(self) -> str:
        """Hash of the config and weights (16 hex digits); see ``pretrained.model_id``."""
        return model_id(self)

    @property
    def spec(self) -> ModelSpec:
        """The identity its tokens record (id, name, rates, hop, codebooks); hashes every weight."""
        return ModelSpec(model_id=self.model_id, model_name=self.config.name, sample_rate=self.sample_rate,
                         frame_rate=float(self.frame_rate), hop_length=self.hop_length,
                         codebook_size=self.codebook_size, n_codebooks=self.n_codebooks)

    def save_pretrained(self, directory, dtype: torch.dtype | None = None) -> str:
        """Write ``config.json`` + ``model.safetensors``; returns the model id of the stored weights.

        ``dtype=torch.float16`` stores floating weights in half precision."""
        return save_pretrained(self, directory, dtype=dtype)

    @classmethod
    def from_pretrained(cls, directory="default", device: str | torch.device = "cpu") -> SimVQCodec:
        """Load a model folder, a built-in model by name (``"default"``) or a Hub repo id (``org/name``),
        strictly and in eval mode; every problem is a ``ModelLoadError`` naming the path."""
        return load_pretrained(directory, lambda config: cls(from_dict(CodecConfig, config, "config")), device)

    # -- checks --------------------------------------------------------------------------
    def _check_audio(self, wav: torch.Tensor) -> torch.Tensor:
        """``wav`` checked, in the model's floating dtype (float64 or half input is converted)."""
        if not isinstance(wav, torch.Tensor) or wav.dim() != 3 or wav.shape[1] != self.channels:
            shape = tuple(wav.shape) if isinstance(wav, torch.Tensor) else type(wav).__name__
            raise ValueError(f"expected audio [B, {self.channels}, N], got {shape}")
        if wav.shape[-1] < 1:
            raise ValueError("audio must have at least one sample")
        if not wav.is_floating_point():
            raise ValueError(f"audio must be floating point, got {wav.dtype}")
        dtype = next(self.parameters()).dtype
        return wav if wav.dtype == dtype else wav.to(dtype)

    def _checked_lengths(self, lengths: torch.Tensor | None, n: int, b: int) -> torch.Tensor | None:
        """Valid samples per item ``[B]`` (CPU int64), checked against ``n`` samples and ``b`` items."""
        if lengths is None:
            return None
        lengths = torch.as_tensor(lengths, dtype=torch.long, device="cpu")
        if lengths.shape != (b,) or int(lengths.min()) < 1 or int(lengths.max()) > n:
            raise ValueError(f"lengths must be [B] = [{b}] values in [1, {n}], got {lengths.tolist()}")
        return lengths

    # -- model -----------------------------------------------------------------------------
    @property
    def _needs_sines(self) -> bool:
        return bool(self.config.excitation_harmonics or self.config.harmonic_branch)

    def _yin(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return yin(wav.mean(1), self.sample_rate, self.hop_length)

    def _latents(self, wav: torch.Tensor, lengths: torch.Tensor | None,
                 pitch: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        z = self.in_proj(self.encoder(wav, lengths))
        if self.pitch_proj is not None:
            f0, voiced = pitch if pitch is not None else self._yin(wav)
            v = voiced.float()
            feats = torch.stack([v, v * octaves(f0)], 1)
            z = z + self.pitch_proj(feats.to(z.dtype))
        return z

    def _head(self, latent: torch.Tensor, frames: torch.Tensor | None) -> torch.Tensor | None:
        """The pitch head on ``latent``; past an item's frames it sees zeros, as the item alone does."""
        if self.pitch_head is None:
            return None
        mask = frame_mask(frames, latent.shape[-1], latent.device)
        return self.pitch_head(latent, None if mask is None else mask.to(latent.dtype))

    def _decode_latent(self, latent: torch.Tensor, frames: torch.Tensor | None,
                       pitch: tuple[torch.Tensor, torch.Tensor] | None = None,
                       head: torch.Tensor | None = None, phase_offset: torch.Tensor | None = None,
                       start_frame: torch.Tensor | None = None) -> torch.Tensor:
        """Latents -> audio. The sines at the F0's multiples (decoder excitation, harmonic branch) follow
        ``pitch`` (F0 Hz, voiced) when given (teacher forcing), else the pitch head's output ``head``
        (computed here when not given); their running phase starts at ``phase_offset [B]`` (default 0).
        ``start_frame [B]``: where the items start in longer ones (a noise-phase Vocos head's frame index)."""
        sines = None
        if self._needs_sines:
            if pitch is None:
                head = self._head(latent, frames) if head is None else head
                f0, prob = PitchHead.to_hz(head.detach())
                pitch = (f0, self.voicing(prob))
        config = self.config
        k = config.decoder_sines
        n_sines = max(k, config.harmonic_branch)
        if n_sines:
            sines = harmonic_excitation(pitch[0], pitch[1].float(), self.hop_length, self.sample_rate,
                                        n_sines, frames, phase_offset).to(latent.dtype)
        if config.decoder.kind == "vocos":  # a source-filter head filters the harmonics' sum
            source = None if not config.source_harmonics else harmonic_sum(
                pitch[0], pitch[1].float(), self.hop_length, self.sample_rate, config.source_harmonics, frames,
                phase_offset).to(latent.dtype)
            audio = self.decoder(latent, frames, source, start_frame)
        else:
            audio = self.decoder(latent, frames, sines[:, :k]) if k else self.decoder(latent, frames)
        if self.harmonic is not None:
            audio = audio + self.harmonic(latent, sines, frames)
        return audio

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None, n_q: int | None = None,
                generator: torch.Generator | None = None) -> CodecOutput:
        """Reconstruct ``wav [B, C, N]``; ``lengths [B]`` (samples) marks padding in a batch.

        ``generator`` (CPU) draws the quantizer dropout's stages in training; it is required then.
        """
        wav = self._check_audio(wav)
        n = wav.shape[-1]
        lengths = self._checked_lengths(lengths, n, wav.shape[0])
        # YIN's pitch of the input feeds the encoder's pitch features and, in training with
        # teacher_forcing, the decoder's excitation; otherwise the decoder reads the F0 off the
        # codes through the pitch head, as decode() does.
        pitch = self._yin(wav) if (self.pitch_proj is not None or self._needs_sines) else None
        z = self._latents(wav, lengths, pitch)
        frames = None if lengths is None else torch.div(lengths + self.hop_length - 1, self.hop_length,
                                                         rounding_mode="floor")
        valid = frame_mask(frames, z.shape[-1], z.device)
        mask = None if valid is None else valid[:, 0].bool()
        q = self.quantizer(z, mask=mask, n_q=n_q, generator=generator)
        latent = self.out_proj(q.quantized)
        head = self._head(latent, frames)
        forced = self.training and self.config.teacher_forcing
        audio = self._decode_latent(latent, frames, pitch if forced else None, head)[..., :n]
        return CodecOutput(
            audio=audio,
            codes=q.codes,
            codebook_loss=q.codebook_loss,
            commitment_loss=q.commitment_loss,
            quantizer_loss=q.loss,
            metrics=q.metrics,
            frame_mask=mask,
            pitch=head,
            input_pitch=pitch,
            latents=z,
            codebook=q.codebook,
        )

    @torch.no_grad()
    def encode(self, wav: torch.Tensor, lengths: torch.Tensor | None = None, n_q: int | None = None) -> torch.Tensor:
        """Audio ``[B, C, N]`` -> codes ``[B, n_q, ceil(N / hop)]`` (int64).

        With ``lengths [B]`` (valid samples per item of a zero-padded batch), item ``b``'s
        codes are ``codes[b, :, :ceil(lengths[b] / hop)]`` and equal those of the item
        encoded alone; later frames are undefined.
        """
        wav = self._check_audio(wav)
        lengths = self._checked_lengths(lengths, wav.shape[-1], wav.shape[0])
        return self.quantizer.encode(self._latents(wav, lengths), n_q=n_q)

    @torch.no_grad()
    def predict_pitch(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes ``[B, n_q, T]`` -> ``(f0 [B, T] in Hz, voicing probability [B, T])`` from the pitch head.

        Frame ``t`` is centred on sample ``t * hop + hop / 2``. Raises ``ValueError`` when the
        model has no pitch head.
        """
        if self.pitch_head is None:
            raise ValueError("this model has no pitch head (CodecConfig.pitch_head is false)")
        if codes.dim() != 3:
            raise ValueError(f"expected codes [B, n_q, T], got {tuple(codes.shape)}")
        return PitchHead.to_hz(self._head(self.codes_to_latent(codes), None))

    def codes_to_latent(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, n_q, T]`` -> the latents ``[B, D, T]`` that the decoder and the pitch head read."""
        return self.out_proj(self.quantizer.decode(codes.to(self.device)))

    def voicing(self, prob: torch.Tensor) -> torch.Tensor:
        """The sines' amplitude per frame from the pitch head's voicing probability (``soft_voicing``)."""
        return voicing_amplitude(prob, self.config.soft_voicing)

    @property
    def takes_phase_offset(self) -> bool:
        """Whether ``decode`` renders harmonics of the pitch head's F0, whose running phase a window of a
        longer signal must continue (``phase_offset``)."""
        return self._needs_sines

    @property
    def takes_start_frame(self) -> bool:
        """Whether ``decode``'s output depends on where a window starts in its item (a noise-phase Vocos
        head's pseudo-random phase follows the frame index: ``start_frame``)."""
        return self.config.decoder.kind == "vocos" and self.config.decoder.phase == "noise"

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, length: int | None = None,
               frame_lengths: torch.Tensor | None = None, phase_offset: torch.Tensor | None = None,
               start_frame: torch.Tensor | None = None) -> torch.Tensor:
        """Codes ``[B, n, T]`` -> audio ``[B, C, length]`` (default ``T * hop_length`` samples).

        ``frame_lengths [B]`` marks valid frames per item of a padded batch, so each item
        decodes as it would alone. ``phase_offset [B]`` (radians, for a model that ``takes_phase_offset``)
        starts the harmonics' running phase there instead of at 0: a window of a long signal then
        continues the previous windows' harmonics (``inference.Batcher`` computes it). ``start_frame [B]``
        (int, for a model that ``takes_start_frame``): the window's first frame in its item.
        """
        if codes.dim() != 3:
            raise ValueError(f"expected codes [B, n_q, T], got {tuple(codes.shape)}")
        t = codes.shape[-1]
        if length is not None and not 1 <= length <= t * self.hop_length:
            raise ValueError(f"length must be in [1, {t * self.hop_length}] for {t} frames, got {length}")
        if frame_lengths is not None:
            frame_lengths = torch.as_tensor(frame_lengths, dtype=torch.long, device="cpu")
        if phase_offset is not None:
            phase_offset = torch.as_tensor(phase_offset, dtype=torch.float64).reshape(-1)
            if phase_offset.shape[0] != codes.shape[0]:
                raise ValueError(f"phase_offset must be [B] = [{codes.shape[0]}], got {tuple(phase_offset.shape)}")
        if start_frame is not None:
            start_frame = torch.as_tensor(start_frame, dtype=torch.long).reshape(-1)
            if start_frame.shape[0] != codes.shape[0] or bool((start_frame < 0).any()):
                raise ValueError(f"start_frame must be [B] = [{codes.shape[0]}] values >= 0, got {start_frame.tolist()}")
        z = self.codes_to_latent(codes)
        audio = self._decode_latent(z, frame_lengths, phase_offset=phase_offset, start_frame=start_frame)
        return audio if length is None else audio[..., :length]
