"""Sigma-VLA bridge to LeRobot datasets."""

import logging

# LeRobot logs a page of torchcodec load tracebacks when no system FFmpeg is
# installed, then falls back to PyAV; sigma picks PyAV itself in that case.
logging.getLogger("lerobot.utils.import_utils").setLevel(logging.ERROR)
