"""Where the colour camera was: its pose in a fixed frame (``odom``, ``map``) at each image stamp, from a log's /tf.

tf2's rule, without ROS: each dynamic transform on the way from the fixed frame to the camera is interpolated between
the two samples that bracket the stamp (linear in translation, slerp in rotation); a stamp before the first or after
the last sample by more than ``EXTRAPOLATION_NS`` has no pose rather than a guessed one. Static transforms come from
the log's ``TransformTree``, which also says which edges move.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Iterable

import numpy as np

from .bag_reader import TransformTree, quaternion_matrix

EXTRAPOLATION_NS = 10_000_000  # how far past the first/last sample a transform is held (clock jitter, not motion)
Edge = tuple[str, str]  # (parent, child)


class TfHistory:
    """Every sample of the log's dynamic transforms, by edge, packed (a stamp and 7 doubles: translation xyz,
    quaternion xyzw) because a long log's /tf holds millions of them."""

    def __init__(self) -> None:
        self.stamps: dict[Edge, array] = {}
        self.values: dict[Edge, array] = {}

    def add(self, tf_message: object) -> None:
        for t in tf_message.transforms:
            edge = (t.header.frame_id.lstrip("/"), t.child_frame_id.lstrip("/"))
            if edge not in self.stamps:
                self.stamps[edge], self.values[edge] = array("q"), array("d")
            p, r = t.transform.translation, t.transform.rotation
            self.stamps[edge].append(int(t.header.stamp.sec) * 1_000_000_000 + int(t.header.stamp.nanosec))
            self.values[edge].extend((p.x, p.y, p.z, r.x, r.y, r.z, r.w))

    def interpolate(self, edge: Edge, stamps: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
        """(T_parent_child at each stamp (N, 4, 4), why each stamp has none: None where it has one)."""
        times = np.frombuffer(self.stamps[edge], dtype=np.int64)
        order = np.argsort(times, kind="stable")
        times, rows = times[order], np.frombuffer(self.values[edge], dtype=np.float64).reshape(-1, 7)[order]
        t, q = rows[:, :3], rows[:, 3:] / np.linalg.norm(rows[:, 3:], axis=1, keepdims=True)
        stamps = np.asarray(stamps, dtype=np.int64)
        after = np.clip(np.searchsorted(times, stamps, side="left"), 0, len(times) - 1)
        before = np.clip(after - 1, 0, None)
        span = (times[after] - times[before]).astype(np.float64)
        weight = np.where(span > 0, (stamps - times[before]) / np.where(span > 0, span, 1.0), 1.0)
        weight = np.clip(weight, 0.0, 1.0)[:, None]  # held at the ends, within the tolerance checked below
        T = np.tile(np.eye(4), (len(stamps), 1, 1))
        T[:, :3, 3] = (1 - weight) * t[before] + weight * t[after]
        T[:, :3, :3] = np.reshape([quaternion_matrix(*x) for x in slerp(q[before], q[after], weight)], (-1, 3, 3))
        parent, child = edge
        why = [f"stamp before the first {parent} -> {child} transform" if s < times[0] - EXTRAPOLATION_NS else
               f"stamp after the last {parent} -> {child} transform" if s > times[-1] + EXTRAPOLATION_NS else None
               for s in stamps]
        return T, why


def slerp(q0: np.ndarray, q1: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Unit quaternions (N, 4) a fraction ``weight`` (N, 1) of the way from ``q0`` to ``q1`` along the shorter arc."""
    dot = np.sum(q0 * q1, axis=1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    angle = np.arccos(np.clip(np.abs(dot), 0.0, 1.0))
    sin = np.sin(angle)
    small = sin < 1e-9  # (nearly) the same rotation: linear weights are exact enough and avoid 0 / 0
    w0 = np.where(small, 1 - weight, np.sin((1 - weight) * angle) / np.where(small, 1.0, sin))
    w1 = np.where(small, weight, np.sin(weight * angle) / np.where(small, 1.0, sin))
    q = w0 * q0 + w1 * q1
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def edge_path(edges: Iterable[Edge], source: str, target: str) -> list[tuple[Edge, bool]] | None:
    """The edges from ``source`` to ``target`` in the tf tree, each with True when walked parent -> child; None when
    the frames are not connected."""
    neighbours: dict[str, list[tuple[str, Edge, bool]]] = {}
    for parent, child in edges:
        neighbours.setdefault(parent, []).append((child, (parent, child), True))
        neighbours.setdefault(child, []).append((parent, (parent, child), False))
    came: dict[str, tuple[str, Edge, bool] | None] = {source: None}
    queue = deque([source])
    while queue:
        frame = queue.popleft()
        for other, edge, forward in neighbours.get(frame, []):
            if other not in came:
                came[other] = (frame, edge, forward)
                queue.append(other)
    if target not in came:
        return None
    path = []
    while came[target] is not None:
        target, edge, forward = came[target]
        path.append((edge, forward))
    return path[::-1]


def fixed_frames(tree: TransformTree, camera: str) -> list[str]:
    """Roots of the tf tree that reach ``camera`` through at least one dynamic transform: the frames the camera
    moves in."""
    children = {child for _, child in tree.edges}
    roots = sorted({parent for parent, _ in tree.edges} - children)
    found = []
    for root in roots:
        path = edge_path(tree.edges, root, camera)
        if path and any(edge not in tree.static for edge, _ in path):
            found.append(root)
    return found


def camera_poses(tree: TransformTree, history: TfHistory, fixed: str, camera: str, stamps: np.ndarray
                 ) -> tuple[list[np.ndarray | None], list[str | None]]:
    """T_fixed_camera at each stamp (None where a transform on the way cannot be interpolated) and why not."""
    path = edge_path(tree.edges, fixed, camera)
    if path is None:
        raise ValueError(f"{fixed!r} and {camera!r} are not connected by /tf or /tf_static")
    poses = np.tile(np.eye(4), (len(stamps), 1, 1))
    why: list[str | None] = [None] * len(stamps)
    for edge, forward in path:
        if edge in tree.static or edge not in history.stamps:
            T = tree.edges[edge]
        else:
            T, missing = history.interpolate(edge, stamps)
            why = [w or m for w, m in zip(why, missing)]
        poses = poses @ (T if forward else np.linalg.inv(T))
    return [None if w else pose for pose, w in zip(poses, why)], why
