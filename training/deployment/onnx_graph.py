"""ONNX graph helpers that export and quantize share: which nodes stay in float, and the checked write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

HEAD_PREFIX = "/net/head/"  # the exporter names nodes by module path: DepthHead is `net.head`


def float_nodes(model, keep_depthwise: bool = True) -> list[str]:
    """Nodes to keep in float: the input stage (layout, normalisation, padding), the depth head and what follows it,
    and (optionally) depthwise convolutions."""
    nodes = list(model.graph.node)
    head = [i for i, n in enumerate(nodes) if n.name.startswith(HEAD_PREFIX)]
    if not head:
        raise ValueError(f"no depth head (nodes named {HEAD_PREFIX}*) in the model: quantize a `depth-train export`")
    keep = {n.name for n in nodes[min(head):]}
    keep |= {n.name for n in nodes if not n.name.startswith("/net/") or n.name == "/net/Pad"}
    if keep_depthwise:
        keep |= {n.name for n in nodes if n.op_type == "Conv" and any(a.name == "group" and a.i > 1
                                                                      for a in n.attribute)}
    return sorted(keep)


def save_checked(model: Any, path: Path, metadata: dict[str, str]) -> None:
    """Set an ONNX model's metadata to ``metadata`` (what runtimes read), check the model fully and write it."""
    import onnx

    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
