"""What the node does to one frame, and the bookkeeping around the stream, without ROS.

``FramePipeline.process`` maps a decoded colour image and its K to the published arrays (encoded depth, packed
organized cloud) with per-stage timings. ``LatestQueue`` keeps at most n frames waiting, dropping the oldest, so the
estimator always works on the newest frame when it is slower than the camera. ``StampCache`` pairs messages by stamp
(camera_info and LR depth to their image), ``Throttle`` keeps a persistent fault from flooding the log,
``StreamStats`` accumulates counts and timing windows for the diagnostics and ``StampRate`` tells the camera's rate
(from header stamps) from the rate frames arrive at, so frames lost on the way are visible whatever the RMW reports.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from .depth_image import encode_depth
from .pointcloud import CloudBuilder
from .scale_align import ScaleAligner, ScaleFit, aspect_problem
from .sensor_confidence import sharpen

STAGES = ("decode", "preprocess", "inference", "postprocess", "cloud", "publish")
NO_LR_DEPTH = "no LR depth for this frame"
T = TypeVar("T")


@dataclass(frozen=True)
class OutputSettings:
    """How a prediction becomes the published arrays (resolved: no "0 = model's range" left)."""

    min_depth: float
    max_depth: float
    encoding: str = "32FC1"
    decimation: int = 1
    color: bool = True
    min_confidence: float = 0.0  # depth whose confidence is below it becomes invalid (0: off)


@dataclass
class FrameResult:
    depth: np.ndarray  # the depth/image array: float32 metres (NaN invalid) or uint16 mm (0 invalid)
    metres: np.ndarray  # float32 metres with NaN invalid (what the cloud is built from)
    cloud: np.ndarray | None  # (h, w, 3|4) float32 packed points, None when not asked for
    timings: dict[str, float]  # ms per stage
    fit: ScaleFit | None = None
    align_skipped: str | None = None  # why this frame's LR depth did not update the scale
    confidence: np.ndarray | None = None  # float32 in [0, 1], when asked for or needed by min_confidence
    masked: int = 0  # pixels made invalid by min_confidence
    image_only: str | None = None  # why the confidence was not sharpened by the LR depth though asked to be


class FramePipeline:
    """Estimator + optional scale alignment + depth encoding + cloud building for one frame at a time.

    ``lr_valid_range`` (metres; None: off): sharpen the confidence with the frame's LR depth, readings outside the
    range ignored (``depth_node.sensor_confidence``; the estimator's model must have the stage).
    """

    def __init__(self, estimator: Any, aligner: ScaleAligner | None = None,
                 lr_valid_range: tuple[float, float] | None = None) -> None:
        self.estimator = estimator
        self.aligner = aligner
        self.lr_valid_range = lr_valid_range
        self.clouds = CloudBuilder()

    def settings(self, min_depth: float, max_depth: float, **kwargs: Any) -> OutputSettings:
        """Output settings with 0 depth limits replaced by the model's range."""
        return OutputSettings(min_depth or self.estimator.min_depth, max_depth or self.estimator.max_depth, **kwargs)

    def process(self, image: np.ndarray, encoding: str, K: np.ndarray, settings: OutputSettings, want_cloud: bool,
                lr_depth: Callable[[], np.ndarray | None] | None = None, depth_out: np.ndarray | None = None,
                cloud_out: np.ndarray | None = None, want_confidence: bool = False,
                confidence_out: np.ndarray | None = None) -> FrameResult:
        """HxWx3 uint8 (``encoding`` rgb8|bgr8) and its 3x3 K -> published arrays at the image's resolution.

        ``lr_depth``: gives the frame's LR depth in metres (None: none), called after inference, so that a sensor
        message arriving after its image has the inference time to arrive. ``depth_out`` / ``cloud_out`` /
        ``confidence_out``: arrays to write the depth image / cloud / confidence into (the node passes message
        buffers). The confidence is computed only when wanted or ``min_confidence`` is set.
        """
        confidence = None
        if want_confidence or settings.min_confidence > 0:
            prediction, confidence, timings = self.estimator.infer_with_confidence(image, encoding)
        else:
            prediction, timings = self.estimator.infer(image, encoding)
        lr = lr_depth() if lr_depth is not None else None  # any wait for it is not post-processing time
        t0 = time.perf_counter()
        fit, skipped = None, None
        if self.aligner is not None:
            if lr is not None:
                fit, skipped = self.aligner.update(prediction, lr)
            prediction = self.aligner.apply(prediction)
        masked, image_only = 0, None
        if confidence is not None and self.lr_valid_range is not None:
            image_only = NO_LR_DEPTH if lr is None else aspect_problem(prediction.shape, lr.shape)
            if image_only is None:
                confidence = sharpen(confidence, prediction, lr, self.lr_valid_range, self.estimator.sensor_stage)
        if confidence is not None:
            if settings.min_confidence > 0:
                unsure = confidence < settings.min_confidence
                masked = int(np.count_nonzero(unsure))
                prediction = np.where(unsure, np.float32(np.nan), prediction)
            if confidence_out is not None:
                np.copyto(confidence_out, confidence)
                confidence = confidence_out
        direct = depth_out if settings.encoding == "32FC1" else None
        metres = encode_depth(prediction, "32FC1", settings.min_depth, settings.max_depth, direct)
        depth = metres if direct is not None or settings.encoding == "32FC1" else encode_depth(
            metres, settings.encoding, 0.0, np.inf, depth_out)
        t1 = time.perf_counter()
        cloud = None
        if want_cloud:
            color = image if settings.color else None
            cloud = self.clouds.build(metres, K, settings.decimation, color, encoding, cloud_out)
        t2 = time.perf_counter()
        timings = dict(timings)
        timings["postprocess"] = timings.get("postprocess", 0.0) + 1e3 * (t1 - t0)
        timings["cloud"] = 1e3 * (t2 - t1)
        return FrameResult(depth, metres, cloud, timings, fit, skipped, confidence, masked, image_only)


class LatestQueue(Generic[T]):
    """A thread-safe queue of at most ``maxsize`` items where a put into a full queue drops the oldest item."""

    def __init__(self, maxsize: int = 1) -> None:
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self.maxsize = maxsize

    def put(self, item: T) -> list[T]:
        """Enqueue ``item``; returns the stale items it pushed out (to be counted as drops)."""
        with self._cond:
            self._items.append(item)
            dropped = []
            while len(self._items) > max(1, self.maxsize):
                dropped.append(self._items.popleft())
            self._cond.notify()
            return dropped

    def get(self, timeout: float) -> T | None:
        """The oldest waiting item, waiting up to ``timeout`` seconds; None when there is none."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            return self._items.popleft() if self._items else None

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class StampCache(Generic[T]):
    """Recent messages by stamp (ns); ``match`` finds the one nearest a stamp within a tolerance, waiting if asked."""

    def __init__(self, size: int = 30) -> None:
        self._items: OrderedDict[int, T] = OrderedDict()
        self._cond = threading.Condition()
        self.size = size

    def add(self, stamp_ns: int, item: T) -> None:
        with self._cond:
            self._items[stamp_ns] = item
            self._items.move_to_end(stamp_ns)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
            self._cond.notify_all()

    def _nearest(self, stamp_ns: int, tolerance_ns: int) -> T | None:
        if not self._items:
            return None
        best = min(self._items, key=lambda s: abs(s - stamp_ns))
        return self._items[best] if abs(best - stamp_ns) <= tolerance_ns else None

    def match(self, stamp_ns: int, tolerance_ns: int, wait_s: float = 0.0) -> T | None:
        """The item nearest ``stamp_ns`` within ``tolerance_ns``; waits up to ``wait_s`` for it to arrive."""
        deadline = time.monotonic() + wait_s
        with self._cond:
            while (item := self._nearest(stamp_ns, tolerance_ns)) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            return item

    def latest(self) -> tuple[int, T] | None:
        with self._cond:
            return next(reversed(self._items.items()), None)


class Throttle:
    """Lets one message per key through every ``period_s`` and counts the ones it held back."""

    def __init__(self, period_s: float = 5.0) -> None:
        self.period_s = period_s
        self._last: dict[str, float] = {}
        self._held: Counter[str] = Counter()

    def __call__(self, key: str) -> int | None:
        """None: stay quiet; else the number of messages suppressed since the last one that went out."""
        now = time.monotonic()
        if now - self._last.get(key, -np.inf) < self.period_s:
            self._held[key] += 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)


class StampRate:
    """The camera's frame rate from header stamps vs the rate frames arrive at, over the last ``window`` frames.

    The camera's period is a low percentile of the stamp gaps (losses only lengthen gaps); every longer gap holds
    frames that were sent but never arrived: ``missing`` estimates them without any help from the RMW. A gap longer
    than ``PAUSE_S`` is taken for a camera that paused or restarted, not for lost frames.
    """

    PAUSE_S = 1.0

    def __init__(self, window: int = 100) -> None:
        self._stamps: deque[int] = deque(maxlen=window)
        self._arrivals: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()

    def add(self, stamp_ns: int, arrival_s: float) -> None:
        with self._lock:
            self._stamps.append(stamp_ns)
            self._arrivals.append(arrival_s)

    def summary(self) -> dict[str, float]:
        """sent_hz (from stamps), received_hz (from arrivals) and missing frames in the window (0 when unknown)."""
        with self._lock:
            stamps, arrivals = np.array(self._stamps, np.float64), np.array(self._arrivals)
        gaps = np.diff(stamps)
        gaps = gaps[(gaps > 0) & (gaps <= self.PAUSE_S * 1e9)]
        if gaps.size < 2:
            return {"sent_hz": 0.0, "received_hz": 0.0, "missing": 0}
        period = float(np.percentile(gaps, 10))
        missing = int(np.sum(np.maximum(np.rint(gaps / period) - 1, 0)))
        span = arrivals[-1] - arrivals[0]
        return {"sent_hz": 1e9 / period, "received_hz": (len(arrivals) - 1) / span if span > 0 else 0.0,
                "missing": missing}


class StreamStats:
    """Frame counts, drops by reason, other events and timing windows, for the diagnostics and the demo's summary."""

    def __init__(self, window: int = 100) -> None:
        self._lock = threading.Lock()
        self.received = 0
        self.processed = 0
        self.clouds = 0
        self.dropped: Counter[str] = Counter()
        self.events: Counter[str] = Counter()  # handled but worth counting: camera_info_reused, align_skipped, ...
        self.timings: dict[str, deque[float]] = {stage: deque(maxlen=window) for stage in (*STAGES, "total",
                                                                                             "latency")}
        self._done: deque[float] = deque(maxlen=window)
        self._confidence: deque[tuple[float, float]] = deque(maxlen=window)  # (mean, fraction masked) per frame
        self.last_problem = ""

    def count_received(self) -> None:
        with self._lock:
            self.received += 1

    def count_dropped(self, reason: str, problem: str = "", n: int = 1) -> None:
        with self._lock:
            self.dropped[reason] += n
            if problem:
                self.last_problem = problem

    def count_event(self, name: str) -> None:
        with self._lock:
            self.events[name] += 1

    def count_processed(self, timings: dict[str, float], cloud: bool) -> None:
        with self._lock:
            self.processed += 1
            self.clouds += int(cloud)
            for stage, ms in timings.items():
                if stage in self.timings:
                    self.timings[stage].append(ms)
            self._done.append(time.monotonic())

    def count_confidence(self, confidence: np.ndarray, masked: int) -> None:
        """One frame's confidence map and how many of its pixels min_confidence made invalid."""
        mean = float(np.mean(confidence))
        with self._lock:
            self._confidence.append((mean, masked / max(confidence.size, 1)))

    def summary(self) -> dict[str, Any]:
        """Counts, output rate and mean / p90 milliseconds per stage over the recent window (and the mean confidence
        and fraction masked by min_confidence over the frames that computed a confidence)."""
        with self._lock:
            confidence = np.mean(self._confidence, 0).tolist() if self._confidence else None
            done = list(self._done)
            rate = (len(done) - 1) / (done[-1] - done[0]) if len(done) > 1 and done[-1] > done[0] else 0.0
            stages = {stage: {"mean_ms": float(np.mean(v)), "p90_ms": float(np.percentile(v, 90))}
                      for stage, v in self.timings.items() if v}
            return {"received": self.received, "processed": self.processed, "clouds": self.clouds,
                    "dropped": dict(self.dropped), "events": dict(self.events), "rate_hz": rate, "stages": stages,
                    "last_problem": self.last_problem, "confidence": confidence}
