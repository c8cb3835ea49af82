"""Whether a video's pictures have an alpha channel, and which decoder gives it
(:func:`video_alpha`): a background video with alpha plays with its transparency.

Most codecs keep alpha in the picture's pixel format, and FFmpeg's own decoder gives it: ProRes
4444 (``yuva444p10le``/``12le``), PNG (``rgba``) and QuickTime Animation (``qtrle``, ``argb``)
in a MOV, FFV1 and UT Video. VP8 and VP9 keep it beside the picture, as a second picture in
each WebM block (``BlockAdditional``), which the track marks (its ``AlphaMode``: the stream's
``alpha_mode`` tag, as ``ffmpeg -c:v libvpx-vp9 -pix_fmt yuva420p`` writes it). FFmpeg's own
``vp8`` and ``vp9`` decoders drop it; libvpx's (``libvpx``, ``libvpx-vp9``) decode it, where
FFmpeg is built with them (PyAV's wheels are). A GIF's transparency is told from its blocks
(:mod:`portrait.capture.gif`), not here.

HEVC keeps alpha as a second layer (Apple's "HEVC with alpha"): it is seen here only where
FFmpeg's HEVC decoder gives that layer and says so in the stream's pixel format; nothing else
of the stream that PyAV shows says it. Untested: this PyAV's FFmpeg (8.1) cannot write such a
file (its libx265 was built without alpha-layer encoding: "Loaded libx265 does not support
alpha layer encoding"), and the README says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Optional, Union

# The decoders that give VP8's and VP9's alpha, which FFmpeg's own decoders drop.
SIDE_ALPHA_DECODERS = {"vp8": "libvpx", "vp9": "libvpx-vp9"}


@dataclass(frozen=True)
class VideoAlpha:
    """What a video's alpha channel needs.

    Attributes:
        has_alpha: the video has an alpha channel.
        decoder: the decoder that gives it where the stream's own drops it (``libvpx-vp9``);
            ``None``: the stream's own.
        missing: the decoder it needs, where this FFmpeg has none: the video plays opaque.
    """

    has_alpha: bool = False
    decoder: Optional[str] = None
    missing: Optional[str] = None

    @property
    def decodable(self) -> bool:
        """Whether the alpha channel is there and can be decoded."""
        return self.has_alpha and self.missing is None


NO_ALPHA = VideoAlpha()


def stream_alpha(codec: str, pix_fmt: Optional[str], alpha_mode: Optional[str],
                 available: Collection[str]) -> VideoAlpha:
    """What a video stream's alpha channel needs.

    Args:
        codec: the stream's codec (``vp9``, ``prores``, ...).
        pix_fmt: its pixel format as FFmpeg reads it from the file, or ``None``.
        alpha_mode: its ``alpha_mode`` tag (WebM's ``AlphaMode``: ``"1"`` for VP8/VP9 alpha).
        available: the codecs this FFmpeg has (``av.codecs_available``).

    Returns:
        :data:`NO_ALPHA` for a stream without alpha, and for a GIF (see the module's note).
    """
    side = SIDE_ALPHA_DECODERS.get(codec)
    if side is not None and alpha_mode == "1":
        if side in available:
            return VideoAlpha(has_alpha=True, decoder=side)
        return VideoAlpha(has_alpha=True, missing=side)
    if codec != "gif" and pix_fmt and _has_alpha_component(pix_fmt):
        return VideoAlpha(has_alpha=True)
    return NO_ALPHA


def _has_alpha_component(pix_fmt: str) -> bool:
    import av

    try:
        return any(component.is_alpha for component in av.VideoFormat(pix_fmt).components)
    except ValueError:  # a format this FFmpeg does not know
        return False


def alpha_of(stream) -> VideoAlpha:
    """:func:`stream_alpha` of an open PyAV video stream; :data:`NO_ALPHA` where FFmpeg knows
    no decoder for it."""
    import av

    context = stream.codec_context
    if context is None:
        return NO_ALPHA
    return stream_alpha(context.name, context.pix_fmt, stream.metadata.get("alpha_mode"),
                        av.codecs_available)


def video_alpha(path: Union[str, Path]) -> VideoAlpha:
    """:func:`alpha_of` the first video stream of the file at ``path``; :data:`NO_ALPHA` where
    there is none or the file cannot be read (its reader then says why)."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return NO_ALPHA
            return alpha_of(container.streams.video[0])
    except (av.FFmpegError, OSError, ValueError):
        return NO_ALPHA


def opaque_note(path: Union[str, Path], alpha: VideoAlpha) -> str:
    """The one line that says a video's alpha channel cannot be decoded here, and what to do."""
    return (f"background video '{path}' has an alpha channel that this FFmpeg cannot decode (it "
            f"needs the {alpha.missing} decoder, which PyAV's FFmpeg here lacks): it is shown "
            "opaque; install a PyAV built with libvpx, or re-encode the video as ProRes 4444 or "
            "PNG in a .mov, which keep their alpha")
