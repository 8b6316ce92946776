"""Audio input/output: reading and converting (`io`: downmix, resample), writing (`write`), and the log-mel of pictures (`mel`)."""

from .io import (
    AUDIO_EXTENSIONS,
    AudioInfo,
    LoadedAudio,
    StreamResampler,
    audio_duration,
    find_audio_files,
    iter_audio_blocks,
    load_audio,
    read_audio_info,
    resample,
    to_model_format,
)
from .write import write_audio

__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioInfo",
    "LoadedAudio",
    "StreamResampler",
    "audio_duration",
    "find_audio_files",
    "iter_audio_blocks",
    "load_audio",
    "read_audio_info",
    "resample",
    "to_model_format",
    "write_audio",
]
