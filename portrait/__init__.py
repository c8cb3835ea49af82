"""portrait: real-time portrait segmentation for webcams, photos and video files."""

__version__ = "0.1.0"
