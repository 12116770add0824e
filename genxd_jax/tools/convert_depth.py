"""Depth Anything V2 weights for curation (``--depth-model da2:WEIGHTS``): convert, inspect, try.

    # the original release (.pth, needs torch once) -> model.safetensors + config.json (Hugging Face layout)
    python -m genxd_jax.tools.convert_depth from-pth depth_anything_v2_vits.pth da2_small/
    # what a checkpoint is (architecture from config.json or the weight shapes, parameter count, output kind)
    python -m genxd_jax.tools.convert_depth inspect da2_small/          # or Depth-Anything-V2-Small-hf/
    # one image -> its relative disparity (float32 .npy at the image's size) and a preview PNG
    python -m genxd_jax.tools.convert_depth predict da2_small/ frame.jpg out/frame_disparity.npy

The Hugging Face checkpoints (``depth-anything/Depth-Anything-V2-Small-hf``: ``model.safetensors`` and
``config.json``) need no conversion: pass their directory to ``--depth-model da2:DIR`` directly.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile

import numpy as np

from genxd_jax.convert.safetensors_io import CheckpointError


def _inspect(args) -> None:
    import dataclasses

    from genxd_jax.convert.depth_anything import read_checkpoint
    from genxd_jax.convert.torch_layout import load_torch_state
    from genxd_jax.curation.depth_anything import abstract_depth_anything

    config, tensors, weights = read_checkpoint(args.weights)
    load_torch_state(abstract_depth_anything(config), tensors, source=str(weights))  # strict key/shape check
    count = sum(int(np.prod(v.shape)) for v in tensors.values())
    print(f"{weights}: {len(tensors)} arrays, {count / 1e6:.1f} M parameters, output {config.kind}")
    for field, value in dataclasses.asdict(config).items():
        print(f"  {field} = {value}")


def _predict(args) -> None:
    import cv2

    from genxd_jax.curation.depth_anything import load_depth_anything

    image = cv2.imread(str(args.image), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read image {args.image}")
    model = load_depth_anything(args.weights, input_size=args.input_size)
    pred = model(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    out = pathlib.Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".tmp-", suffix=".npy")
    with os.fdopen(fd, "wb") as f:
        np.save(f, pred.astype(np.float32))
    os.replace(tmp, out)
    lo, hi = float(pred.min()), float(pred.max())
    preview = ((pred - lo) / max(hi - lo, 1e-12) * 255).astype(np.uint8)
    png = out.with_suffix(".png")
    tmp_png = png.with_name(".tmp-" + png.name)
    cv2.imwrite(str(tmp_png), cv2.applyColorMap(preview, cv2.COLORMAP_INFERNO))
    os.replace(tmp_png, png)
    print(f"wrote {out} ({model.kind}, {pred.shape[0]}x{pred.shape[1]}, range {lo:.4g}..{hi:.4g}) and {png}")


def _from_pth(args) -> None:
    from genxd_jax.convert.depth_anything import convert_original_checkpoint

    out = convert_original_checkpoint(args.pth, args.out_dir, depth_estimation_type=args.depth_type,
                                      max_depth=args.max_depth, num_attention_heads=args.num_heads)
    print(f"wrote {out}/model.safetensors and {out}/config.json")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genxd_jax.tools.convert_depth", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("from-pth", help="original depth_anything_v2_vit*.pth -> Hugging Face safetensors layout")
    p.add_argument("pth", type=pathlib.Path)
    p.add_argument("out_dir", type=pathlib.Path)
    p.add_argument("--depth-type", choices=("relative", "metric"), default="relative",
                   help="'metric' for the metric_depth checkpoints (sigmoid head)")
    p.add_argument("--max-depth", type=float, default=1.0, help="metric checkpoints: 20 indoor, 80 outdoor")
    p.add_argument("--num-heads", type=int, default=None, help="attention heads (default: width / 64)")
    p.set_defaults(func=_from_pth)
    p = sub.add_parser("inspect", help="print a checkpoint's architecture after a strict key/shape check")
    p.add_argument("weights", type=pathlib.Path, help="model.safetensors or its directory")
    p.set_defaults(func=_inspect)
    p = sub.add_parser("predict", help="run one image through the model")
    p.add_argument("weights", type=pathlib.Path)
    p.add_argument("image", type=pathlib.Path)
    p.add_argument("output", type=pathlib.Path, help=".npy output (a preview .png is written beside it)")
    p.add_argument("--input-size", type=int, default=518, help="shorter side fed to the network (default 518)")
    p.set_defaults(func=_predict)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (CheckpointError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
