"""Input subscriptions whose reliability follows the topic's publishers, and that count what transport loses.

Why ``auto``: a reliable subscription never matches a best-effort publisher, and a best-effort subscription of a
reliable publisher of ~1 MB raw images loses fragments in Fast DDS (most frames never reach the callback). So, like
rosbag2's adaptive QoS and ``ros2 topic echo``, ``auto`` subscribes reliable when every publisher of the topic offers
reliable and best-effort when any offers best-effort. With no publisher yet it subscribes reliable (what camera
drivers offer by default); a publisher that cannot match raises the incompatible-QoS event, and ``check`` (called on a
timer) re-reads the publishers and re-creates the subscription when the choice changes, logging the reason once.

Messages lost before the callback are counted from the RMW's message-lost event where the RMW reports it (Fast DDS
does); where it does not, that is said once in the log and the stamp-gap estimate in ``frame_pipeline`` remains.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rclpy.event_handler import QoSMessageLostInfo, SubscriptionEventCallbacks, UnsupportedEventTypeError
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

RELIABILITY_NAMES = {ReliabilityPolicy.RELIABLE: "reliable", ReliabilityPolicy.BEST_EFFORT: "best_effort"}


def choose_reliability(offered: list[str], current: str | None) -> tuple[str, str]:
    """(reliability, why) for an ``auto`` subscription, given each publisher's offered reliability.

    Without publishers the current choice stays (reliable at first): a publisher leaving changes nothing.
    """
    if not offered:
        return current or "reliable", "no publisher yet; reliable is what camera drivers offer by default"
    best_effort = offered.count("best_effort")
    if best_effort:
        return "best_effort", f"{best_effort} of {len(offered)} publisher(s) offer best_effort"
    return "reliable", f"all {len(offered)} publisher(s) offer reliable"


def profile(reliability: str, depth: int) -> QoSProfile:
    policy = ReliabilityPolicy.BEST_EFFORT if reliability == "best_effort" else ReliabilityPolicy.RELIABLE
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=policy)


class InputSubscription:
    """One input topic: a subscription with the reliability ``setting`` (auto | reliable | best_effort).

    ``lost`` counts messages the RMW reports lost before the callback; ``lost_reported`` is False where the RMW
    has no message-lost event.
    """

    def __init__(self, node: Any, msg_type: type, topic: str, callback: Callable[[Any], None], setting: str,
                 depth: int) -> None:
        self.node, self.msg_type, self.topic, self.callback = node, msg_type, topic, callback
        self.setting, self.depth = setting, depth
        self.reliability: str | None = None
        self.subscription: Any = None
        self.lost = 0
        self.lost_reported = True
        self.check()

    def offered(self) -> list[str]:
        """Each current publisher's offered reliability (unknown policies read as best_effort: the safe match)."""
        return [RELIABILITY_NAMES.get(info.qos_profile.reliability, "best_effort")
                for info in self.node.get_publishers_info_by_topic(self.topic)]

    def check(self) -> None:
        """Re-read the publishers and re-create the subscription when the reliability to use has changed."""
        if self.setting == "auto":
            wanted, why = choose_reliability(self.offered(), self.reliability)
        else:
            wanted, why = self.setting, "set by qos.input_reliability"
        if wanted == self.reliability:
            return
        verb = "subscribing" if self.subscription is None else f"re-subscribing (was {self.reliability})"
        self.node.get_logger().info(f"{self.topic}: {verb} {wanted}: {why}")
        if self.subscription is not None:
            self.node.destroy_subscription(self.subscription)
        self.reliability = wanted
        self.subscription = self._create(wanted)

    def _create(self, reliability: str) -> Any:
        qos = profile(reliability, self.depth)
        events = SubscriptionEventCallbacks(message_lost=self._on_lost, incompatible_qos=self._on_incompatible)
        if self.lost_reported:
            try:
                return self.node.create_subscription(self.msg_type, self.topic, self.callback, qos,
                                                     event_callbacks=events)
            except UnsupportedEventTypeError:
                self.lost_reported = False
                self.node.get_logger().warning(
                    f"{self.topic}: this RMW does not report lost messages; transport loss is estimated from gaps "
                    "in the header stamps only")
        events.message_lost = None
        return self.node.create_subscription(self.msg_type, self.topic, self.callback, qos, event_callbacks=events)

    def _on_lost(self, info: QoSMessageLostInfo) -> None:
        self.lost += int(info.total_count_change)

    def _on_incompatible(self, _info: Any) -> None:
        if self.setting == "auto":
            self.check()  # a best-effort publisher appeared: follow it now rather than at the next timer tick
        else:
            self.node.get_logger().warning(
                f"{self.topic}: a publisher offers QoS incompatible with qos.input_reliability:={self.setting}; "
                "no messages from it will arrive (use auto to follow the publishers)")
