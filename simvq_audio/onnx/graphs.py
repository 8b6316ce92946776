"""The codec as two export-friendly graphs: audio -> codes and codes -> audio.

``EncoderGraph`` and ``DecoderGraph`` compute what ``SimVQCodec.encode`` and ``SimVQCodec.decode``
compute, from the same weights, with only operations that ONNX exporters trace with dynamic batch
and length:

* weight norm is folded into plain convolutions (``fold_weight_norm``);
* every padding is static: a strided convolution needs ``(-N) mod stride`` extra samples on the
  right so that its last window is full, and reflect (or zero) padding is prefix-consistent, so
  padding ``stride - 1`` extra samples always and letting the convolution ignore those it does not
  reach gives the same frames without a length-dependent pad;
* YIN's autocorrelation, computed in torch with an FFT, is the same DFT written as two matrix
  products (``GraphYin``), and its frames are cut by a strided identity convolution;
* the SimVQ search is the expanded L2 distance to the effective codebook ``W(C)`` in float64, so a
  code differs from torch's exact search only where two codes are within ~1e-15 of a tie.

The graphs need at least ``min_samples(codec)`` samples (``min_frames(codec)`` frames): below
that a reflect padding would be as wide as its input, which torch handles by zero-extension and a
static graph cannot. Padded batches are not expressed in the graphs: every item is one input, as
the torch codec's per-item padding makes it (``runtime.OnnxCodec`` runs items alone).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize

from ..errors import SimVQError
from ..modules.excitation import harmonic_excitation, harmonic_sum, voicing_amplitude
from ..modules.yin import yin_from_correlation

F0_REFERENCE_HZ = 100.0  # the pitch features' unit: octaves above 100 Hz (as the codec's ``octaves``)


def _dft_angles(bins: int, samples: int, n_fft: int) -> np.ndarray:
    """``[bins, samples]`` angles ``2 pi (k j mod n_fft) / n_fft`` of an ``n_fft``-point DFT (exact integer phase)."""
    return 2 * np.pi * ((np.arange(bins)[:, None] * np.arange(samples)[None, :]) % n_fft) / n_fft


def _irfft_weights(bins: int) -> np.ndarray:
    """``[bins, 1]``: 2, except 1 for the DC and Nyquist bins, which an inverse real DFT (even size) counts once."""
    weight = np.full((bins, 1), 2.0)
    weight[0] = weight[-1] = 1.0
    return weight


class OnnxExportError(SimVQError, NotImplementedError):
    """A part of the codec that has no ONNX graph (an unknown layer)."""


def _unparametrized(module: nn.Module) -> nn.Module:
    """A copy of parametrized ``module`` of its original class, each parametrized tensor a plain parameter.

    Not ``parametrize.remove_parametrizations``: that deletes the property from the module's class,
    which a ``copy.deepcopy`` of the module shares, so folding a copy would break the original.
    """
    cls = parametrize.type_before_parametrizations(module)
    plain = cls.__new__(cls)
    plain.__dict__.update(module.__dict__)
    plain._parameters = dict(module._parameters)
    plain._buffers = dict(module._buffers)
    plain._modules = {k: v for k, v in module._modules.items() if k != "parametrizations"}
    with torch.no_grad():
        for name in module.parametrizations.keys():
            plain._parameters[name] = nn.Parameter(getattr(module, name).detach().clone(), requires_grad=False)
    return plain


def fold_weight_norm(module: nn.Module) -> nn.Module:
    """``module`` with every parametrized submodule (weight norm) replaced by a plain one holding the
    current value; submodules are replaced in place, the result is returned (``module`` itself unless
    it is parametrized).

    The folded weight is the tensor the parametrization computes on each forward, so outputs are
    bitwise unchanged; the state dict's keys change (``...parametrizations.weight.original0/1``
    become ``...weight``), so compute a model id before folding.
    """
    if parametrize.is_parametrized(module):
        module = _unparametrized(module)
    for name, child in list(module.named_children()):
        folded = fold_weight_norm(child)
        if folded is not child:
            setattr(module, name, folded)
    return module


# -- SEANet layers with static padding --------------------------------------------------------------
class StaticPadConv1d(nn.Module):
    """A padded convolution (``modules/conv.py``) whose padding does not depend on the input length."""

    def __init__(self, wrapper: nn.Module):
        super().__init__()
        self.conv = fold_weight_norm(copy.deepcopy(wrapper.conv))
        kernel = (self.conv.kernel_size[0] - 1) * self.conv.dilation[0] + 1
        stride = self.conv.stride[0]
        total = kernel - stride
        if wrapper.causal:
            left, right = total, 0
        else:
            right = total // 2
            left = total - right
        self.pads = (left, right + stride - 1)  # stride - 1: the most extra padding any length needs
        self.mode = wrapper.pad_mode
        self.stride = stride

    def out_length(self, n: int) -> int:
        return -(-n // self.stride)

    def valid_for(self, n: int) -> bool:
        """Whether an input of ``n`` samples is longer than the reflect padding (always for zeros)."""
        return self.mode != "reflect" or n > max(self.pads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.pads, mode=self.mode))


class TrimConvTranspose1d(nn.Module):
    """A transposed convolution that trims its overlap (``modules/conv.py``), weight norm folded."""

    def __init__(self, wrapper: nn.Module):
        super().__init__()
        self.convtr = fold_weight_norm(copy.deepcopy(wrapper.convtr))
        kernel, stride = self.convtr.kernel_size[0], self.convtr.stride[0]
        total = kernel - stride
        if wrapper.causal:
            right = math.ceil(total * wrapper.trim_right_ratio)
        else:
            right = total // 2
        self.trim = (total - right, right)
        self.stride = stride

    def out_length(self, n: int) -> int:
        return n * self.stride

    def valid_for(self, n: int) -> bool:
        return True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.convtr(x)
        left, right = self.trim
        return y[..., left:] if right == 0 else y[..., left:-right]


class StaticResBlock(nn.Module):
    """A SEANet residual unit with static-padding layers."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = nn.Sequential(*convert_layers(block.block))
        self.shortcut = nn.Sequential(*convert_layers(block.shortcut))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block(x)


def convert_layers(layers: nn.Module) -> list[nn.Module]:
    """SEANet layers (a ``Sequential`` or one module) as export-friendly modules, by what they hold:
    a padded convolution has ``conv`` and ``pad_mode``, a trimmed transposed one ``convtr``, a
    residual unit ``block`` and ``shortcut``; activations, identities and the LSTM are kept."""
    modules = layers if isinstance(layers, nn.Sequential) else [layers]
    out: list[nn.Module] = []
    for layer in modules:
        if hasattr(layer, "conv") and hasattr(layer, "pad_mode"):
            out.append(StaticPadConv1d(layer))
        elif hasattr(layer, "convtr"):
            out.append(TrimConvTranspose1d(layer))
        elif hasattr(layer, "block") and hasattr(layer, "shortcut"):
            out.append(StaticResBlock(layer))
        elif isinstance(layer, (nn.ELU, nn.GELU, nn.LeakyReLU, nn.SiLU, nn.Identity)) or hasattr(layer, "lstm"):
            out.append(copy.deepcopy(layer))
        else:
            raise OnnxExportError(f"no ONNX graph for layer {type(layer).__name__}")
    return out


def _lengths_ok(layers: list[nn.Module], n: int) -> tuple[bool, int]:
    """Whether ``n`` input samples pass ``layers`` without a padding as wide as its input; output length."""
    for layer in layers:
        if isinstance(layer, StaticResBlock):
            for part in (*layer.shortcut, *layer.block):
                if isinstance(part, StaticPadConv1d) and not part.valid_for(n):
                    return False, n
        elif isinstance(layer, (StaticPadConv1d, TrimConvTranspose1d)):
            if not layer.valid_for(n):
                return False, n
            n = layer.out_length(n)
    return True, n


# -- YIN without an FFT -----------------------------------------------------------------------------
class GraphYin(nn.Module):
    """``yin`` of ``modules/yin.py`` (de Cheveigne & Kawahara) as an export-friendly module.

    Same frames, window, thresholds and interpolation; the autocorrelation ``r(tau) = sum_j
    x_j x_{j + tau}`` is the same zero-padded DFT product, written as matrix products with constant
    DFT matrices (``[length, n_fft/2+1]`` forward, ``[n_fft/2+1, tau_max+1]`` inverse).
    ``forward(wav [B, N]) -> (f0 [B, T] Hz, voiced [B, T] bool)``.
    """

    def __init__(self, sample_rate: int, hop_length: int, fmin: float = 60.0, fmax: float = 500.0,
                 threshold: float = 0.15, silence_db: float = -40.0):
        super().__init__()
        self.sample_rate, self.hop = sample_rate, hop_length
        self.tau_min, self.tau_max = max(2, int(sample_rate / fmax)), int(math.ceil(sample_rate / fmin))
        self.w = w = self.tau_max
        self.length = length = w + self.tau_max + 1
        self.left = w // 2 - hop_length // 2
        self.threshold, self.silence = threshold, 10 ** (silence_db / 20)
        n_fft = 1 << (length + w - 1).bit_length()
        bins = n_fft // 2 + 1
        angle = _dft_angles(bins, length, n_fft).T
        forward = np.concatenate([np.cos(angle), -np.sin(angle)], 1)  # [length, 2 * bins]: re, im
        weight = _irfft_weights(bins)
        inv_angle = _dft_angles(bins, self.tau_max + 1, n_fft)
        inverse = np.concatenate([weight * np.cos(inv_angle), -weight * np.sin(inv_angle)], 0) / n_fft
        self.register_buffer("dft", torch.from_numpy(forward).float(), persistent=False)
        self.register_buffer("idft", torch.from_numpy(inverse).float(), persistent=False)
        self.register_buffer("eye", torch.eye(length)[:, None, :], persistent=False)
        self.bins = bins

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` -> ``[B, T, length]``, frame ``t`` starting ``w / 2`` before its centre."""
        left = self.left
        x = F.pad(x, (max(left, 0), self.length - 1 - left))
        if left < 0:
            x = x[:, -left:]
        # A strided identity convolution cuts the frames (exact: one product by 1 per output).
        return F.conv1d(x[:, None, :], self.eye, stride=self.hop).transpose(1, 2)

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frames = self.frames(wav.float())
        frames = frames - frames.mean(-1, keepdim=True)
        w, bins = self.w, self.bins
        spec = frames @ self.dft
        head = frames[..., :w] @ self.dft[:w]
        s_re, s_im, h_re, h_im = spec[..., :bins], spec[..., bins:], head[..., :bins], head[..., bins:]
        product = torch.cat([s_re * h_re + s_im * h_im, s_im * h_re - s_re * h_im], -1)
        corr = product @ self.idft  # r(tau), tau = 0..tau_max
        return yin_from_correlation(frames, corr, w, self.tau_min, self.tau_max, self.threshold, self.silence,
                                    self.sample_rate)


# -- the two graphs -------------------------------------------------------------------------------
def _codebooks(codec: nn.Module) -> torch.Tensor:
    """The effective codebooks of every stage, ``[n_q, K, d]`` float32 (SimVQ: ``W(C)``)."""
    with torch.no_grad():
        return torch.stack([stage.codebook().detach().float().cpu() for stage in codec.quantizer.stages])


def _plain(module: nn.Module | None) -> nn.Module | None:
    return None if module is None else fold_weight_norm(copy.deepcopy(module)).cpu().float()


class EncoderGraph(nn.Module):
    """``audio [B, C, N] float32 -> codes [B, n_q, ceil(N / hop)] int64``, as ``SimVQCodec.encode``."""

    def __init__(self, codec: nn.Module):
        super().__init__()
        config = codec.config
        self.encoder = nn.Sequential(*convert_layers(codec.encoder.model)).float()
        self.in_proj = _plain(codec.in_proj)
        self.pitch_proj = _plain(codec.pitch_proj)
        self.yin = GraphYin(config.sample_rate, codec.hop_length) if codec.pitch_proj is not None else None
        codebooks = _codebooks(codec)
        self.register_buffer("codebooks", codebooks)
        self.register_buffer("codebooks64", codebooks.double())
        self.register_buffer("norms64", codebooks.double().square().sum(-1))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        z = self.in_proj(self.encoder(audio))
        if self.yin is not None:
            f0, voiced = self.yin(audio.mean(1))
            v = voiced.float()
            octaves = torch.log2(f0.clamp(min=1.0) / F0_REFERENCE_HZ)
            z = z + self.pitch_proj(torch.stack([v, v * octaves], 1))
        residual = z.transpose(1, 2)  # [B, T, d]
        codes = []
        for i in range(self.codebooks.shape[0]):
            # ||x - c||^2 - ||x||^2 in float64: the argmin of torch's exact search but for ties within ~1e-15.
            dist = self.norms64[i] - 2.0 * (residual.double() @ self.codebooks64[i].t())
            code = dist.argmin(-1)
            codes.append(code)
            residual = residual - self.codebooks[i][code]
        return torch.stack(codes, 1)


class GraphISTFT(nn.Module):
    """``ISTFTHead.istft`` of ``modules/vocos.py`` ("same" padding, one item) as an export-friendly module.

    The inverse real DFT is two matrix products with constant cosine and sine tables (the window
    folded in; opset 17 has no inverse FFT). The overlap-add: where ``n_fft`` is a multiple of the
    hop (every built-in decoder), each frame is cut into ``n_fft / hop`` blocks of one hop and block
    ``k`` of frame ``t`` is added to output block ``t + k`` (shifted sums, no multiplications);
    otherwise a transposed convolution with an identity kernel (``n_fft^2`` products per frame, a
    tenth of the decoder's time in ONNX Runtime at n_fft 800). The window envelope is the same
    overlap-add of the squared window over ``T`` frames of ones.
    ``forward(re [B, F, T], im [B, F, T]) -> audio [B, T * hop]``.
    """

    def __init__(self, head: nn.Module):
        super().__init__()
        n, hop = head.n_fft, head.hop_length
        self.n_fft, self.hop = n, hop
        bins = n // 2 + 1
        angle = _dft_angles(bins, n, n)
        weight = _irfft_weights(bins)  # n_fft is even
        window = head.window.double().cpu().numpy()[None, :]
        self.register_buffer("cos", torch.from_numpy(weight * np.cos(angle) * window / n).float(), persistent=False)
        self.register_buffer("sin", torch.from_numpy(-weight * np.sin(angle) * window / n).float(), persistent=False)
        self.blocks = n // hop if n % hop == 0 else 0
        if not self.blocks:
            self.register_buffer("eye", torch.eye(n)[:, None, :], persistent=False)
        self.register_buffer("window_sq", head.window.float().square()[None, None, :], persistent=False)

    def overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B, T, n_fft]`` windowed frames -> ``[B, (T - 1) * hop + n_fft]``, frame ``t`` at sample ``t * hop``."""
        if not self.blocks:
            return F.conv_transpose1d(frames.transpose(1, 2), self.eye, stride=self.hop)[:, 0]
        m = self.blocks
        parts = frames.reshape(frames.shape[0], frames.shape[1], m, self.hop)  # [B, T, m, hop]
        out = F.pad(parts[:, :, 0], (0, 0, 0, m - 1))
        for k in range(1, m):
            out = out + F.pad(parts[:, :, k], (0, 0, k, m - 1 - k))
        return out.reshape(frames.shape[0], -1)

    def forward(self, re: torch.Tensor, im: torch.Tensor) -> torch.Tensor:
        frames = re.transpose(1, 2) @ self.cos + im.transpose(1, 2) @ self.sin  # [B, T, n_fft]
        audio = self.overlap_add(frames)
        envelope = F.conv_transpose1d(torch.ones_like(re[:, :1]), self.window_sq, stride=self.hop)[:, 0]
        t, pad = re.shape[-1], (self.n_fft - self.hop) // 2
        audio, envelope = audio[:, pad:pad + t * self.hop], envelope[:, pad:pad + t * self.hop]
        return audio / envelope.clamp(min=1e-8)


class GraphSTFT(nn.Module):
    """``ISTFTHead.stft`` as a strided convolution with windowed cosine and sine kernels (no FFT in opset 17):
    ``forward(signal [B, 1, T * hop]) -> (re, im)``, each ``[B, n_fft // 2 + 1, T]``."""

    def __init__(self, head: nn.Module):
        super().__init__()
        n, hop = head.n_fft, head.hop_length
        self.pad, self.hop, self.bins = (n - hop) // 2, hop, n // 2 + 1
        angle = _dft_angles(self.bins, n, n)
        window = head.window.double().cpu().numpy()[None, :]
        kernels = np.concatenate([np.cos(angle) * window, -np.sin(angle) * window])
        self.register_buffer("kernels", torch.from_numpy(kernels).float()[:, None, :], persistent=False)

    def forward(self, signal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        spec = F.conv1d(F.pad(signal, (self.pad, self.pad)), self.kernels, stride=self.hop)
        return spec[:, :self.bins], spec[:, self.bins:]


class VocosGraph(nn.Module):
    """``VocosDecoder`` of ``modules/vocos.py`` for whole items: ``latent [B, D, T] (, source [B, 1, T * hop])
    -> audio [B, 1, T * hop]``; its own layers (``features``, ``head.polar``), then ``GraphISTFT`` in place
    of the complex inverse STFT (and ``GraphSTFT`` for a source-filter head's source)."""

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.decoder = copy.deepcopy(decoder)
        self.istft = GraphISTFT(decoder.head)
        self.stft = GraphSTFT(decoder.head) if decoder.head.source else None

    def forward(self, latent: torch.Tensor, source: torch.Tensor | None = None,
                start_frame: torch.Tensor | None = None) -> torch.Tensor:
        log_mag, phase, log_gain = self.decoder.head.polar(self.decoder.features(latent), start_frame)
        mag = torch.exp(log_mag)
        re, im = mag * torch.cos(phase), mag * torch.sin(phase)
        if self.stft is not None:
            gain = torch.exp(log_gain)
            source_re, source_im = self.stft(source)
            re, im = re + gain * source_re, im + gain * source_im
        return self.istft(re, im)[:, None]


def _lookup(codebooks: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Codes ``[B, n_q, T]`` -> the sum of their code vectors ``[B, D, T]`` (the quantizer's decode)."""
    q = codebooks[0][codes[:, 0]]
    for i in range(1, codebooks.shape[0]):
        q = q + codebooks[i][codes[:, i]]
    return q.transpose(1, 2)


class DecoderGraph(nn.Module):
    """``codes [B, n_q, T] int64 (, phase_offset [B] float32) (, start_frame [B] int64) -> audio [B, C, T * hop]
    float32``, as ``SimVQCodec.decode`` (untrimmed). The extra inputs are there when the codec takes them
    (``takes_phase_offset``: harmonics of the pitch head's F0; ``takes_start_frame``: a noise-phase Vocos head)."""

    def __init__(self, codec: nn.Module):
        super().__init__()
        config = codec.config
        self.register_buffer("codebooks", _codebooks(codec))
        self.out_proj = _plain(codec.out_proj)
        vocos = config.decoder.kind == "vocos"
        self.vocos = VocosGraph(codec.decoder).float() if vocos else None
        self.layers = nn.ModuleList([] if vocos else convert_layers(codec.decoder.model)).float()
        self.inject = nn.ModuleList(StaticPadConv1d(inj) for inj in ([] if vocos else codec.decoder.inject)).float()
        self.ratios = tuple(config.seanet.ratios)
        self.pitch_head = _plain(codec.pitch_head)
        self.harmonic = _plain(codec.harmonic)
        self.hop, self.sample_rate = codec.hop_length, config.sample_rate
        self.source_harmonics, self.excitation_harmonics = config.source_harmonics, config.decoder_sines
        self.n_sines = max(self.excitation_harmonics, config.harmonic_branch)
        self.takes_phase_offset, self.takes_start_frame = codec.takes_phase_offset, codec.takes_start_frame
        self.soft_voicing = bool(config.soft_voicing)

    @property
    def extra_inputs(self) -> tuple[str, ...]:
        """The names of the inputs after ``codes``, in order."""
        return (("phase_offset",) if self.takes_phase_offset else ()) + \
            (("start_frame",) if self.takes_start_frame else ())

    def forward(self, codes: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        if len(extra) > len(self.extra_inputs):
            raise ValueError(f"this graph takes codes and {self.extra_inputs}, got {len(extra)} extra inputs")
        given = dict(zip(self.extra_inputs, extra, strict=False))  # those not given: 0
        phase_offset, start_frame = given.get("phase_offset"), given.get("start_frame")
        latent = self.out_proj(_lookup(self.codebooks, codes))
        sines = source = None
        if self.n_sines or self.source_harmonics:
            f0, prob = _pitch_hz(self.pitch_head, latent)
            voiced = voicing_amplitude(prob, self.soft_voicing)
            if self.n_sines:
                sines = harmonic_excitation(f0, voiced, self.hop, self.sample_rate, self.n_sines, None, phase_offset)
            if self.source_harmonics:
                source = harmonic_sum(f0, voiced, self.hop, self.sample_rate, self.source_harmonics, None,
                                      phase_offset)
        if self.vocos is not None:
            x = self.vocos(latent, source, start_frame)
        else:
            x, stage, rate = latent, 0, 1
            for layer in self.layers:
                x = layer(x)
                if self.excitation_harmonics and isinstance(layer, TrimConvTranspose1d):
                    rate *= self.ratios[stage]
                    pool = self.hop // rate
                    e = sines[:, :self.excitation_harmonics]
                    x = x + self.inject[stage](e if pool == 1 else F.avg_pool1d(e, pool))
                    stage += 1
        if self.harmonic is not None:
            x = x + self.harmonic(latent, sines)
        return x


def _pitch_hz(pitch_head: nn.Module, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``PitchHead.to_hz`` with pow for exp2 (no ONNX exp2 in opset 17): F0 in Hz and the voicing probability."""
    head = pitch_head(latent)
    return F0_REFERENCE_HZ * torch.pow(2.0, head[:, 1]), torch.sigmoid(head[:, 0])


class PitchGraph(nn.Module):
    """``codes [B, n_q, T] int64 -> (f0 [B, T] Hz, voicing probability [B, T]) float32``, as
    ``SimVQCodec.predict_pitch``: what a windowed decode needs to continue the harmonics' phase."""

    def __init__(self, codec: nn.Module):
        super().__init__()
        self.register_buffer("codebooks", _codebooks(codec))
        self.out_proj = _plain(codec.out_proj)
        self.pitch_head = _plain(codec.pitch_head)

    def forward(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _pitch_hz(self.pitch_head, self.out_proj(_lookup(self.codebooks, codes)))


def min_frames(codec: nn.Module) -> int:
    """Fewest frames both graphs accept (every reflect padding narrower than its input)."""
    encoder = convert_layers(codec.encoder.model)
    decoder = convert_layers(codec.decoder.model) if codec.config.decoder.kind == "seanet" else []
    hop = codec.hop_length
    for t in range(1, 1 << 16):
        # The encoder must accept every length with t frames, so check the shortest: (t - 1) * hop + 1.
        if _lengths_ok(encoder, (t - 1) * hop + 1)[0] and _lengths_ok(decoder, t)[0]:
            return t
    raise ValueError("no input length satisfies the graphs' paddings")


def min_samples(codec: nn.Module) -> int:
    """Fewest samples ``EncoderGraph`` accepts: ``(min_frames - 1) * hop + 1``."""
    return (min_frames(codec) - 1) * codec.hop_length + 1
