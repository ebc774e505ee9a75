"""The Fast DDS profile of the node's process: a shared-memory segment large enough for its outputs.

Fast DDS gives each process a 512 KB shared-memory segment; the node writes a 1.2 MB depth image and a 1.2-4.9 MB
cloud per frame, and with a slow viewer the cloud's buffers take the image's, which then waits seconds for a resend
or is lost (docs/node.md, benchmarks section 5). ``config/fastdds_large_outputs.xml`` gives a 16 MB segment. Fast DDS
reads ``FASTDDS_DEFAULT_PROFILES_FILE`` when the process creates its first participant, so the node sets it in its
own ``main`` before ``rclpy.init``: every way of starting it (launch file, ``ros2 run``, ``depth-estimator``) gets
the profile, and a profile the user set is left alone.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

PROFILE_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"
SETTING_VARIABLE = "DEPTH_NODE_DDS_PROFILE"  # auto (default) | a profile file | empty: Fast DDS's own defaults
PROFILE_NAME = "fastdds_large_outputs.xml"


def packaged_profile() -> Path | None:
    """The profile shipped with the package: the source tree's config/ (a checkout or editable install), else the
    share/depth_node/config/ of the prefix the package is installed in (pip, colcon and Debian layouts alike:
    PREFIX/lib/pythonX.Y/site-packages/depth_node beside PREFIX/share/depth_node)."""
    here = Path(__file__).resolve().parent
    candidates = [here.parent / "config" / PROFILE_NAME]
    if len(here.parents) > 3:
        candidates.append(here.parents[3] / "share" / "depth_node" / "config" / PROFILE_NAME)
    return next((path for path in candidates if path.is_file()), None)


def apply_profile(environ: MutableMapping[str, str] = os.environ) -> tuple[str, bool]:
    """Set the process's Fast DDS profile from ``DEPTH_NODE_DDS_PROFILE``: (the profile it uses and why, whether that
    is what was asked; False for a profile file that does not exist, which is then not set).

    ``auto`` (or unset): the packaged profile, unless ``FASTDDS_DEFAULT_PROFILES_FILE`` is already set (the user's
    wins); a path: that file; empty: nothing is set (Fast DDS's defaults, or the user's file if set).
    """
    setting = environ.get(SETTING_VARIABLE, "auto").strip()
    if setting == "auto":
        if PROFILE_VARIABLE in environ:
            return f"{environ[PROFILE_VARIABLE]} ({PROFILE_VARIABLE} was set before the node)", True
        packaged = packaged_profile()
        if packaged is None:
            return f"Fast DDS's defaults ({PROFILE_NAME} is not installed beside the package)", False
        setting = str(packaged)
    elif not setting:
        return f"{environ.get(PROFILE_VARIABLE) or 'Fast DDS defaults'} ({SETTING_VARIABLE} empty)", True
    elif not Path(setting).is_file():
        return f"Fast DDS's defaults ({SETTING_VARIABLE}={setting}: no such file)", False
    environ[PROFILE_VARIABLE] = setting
    return setting, True
