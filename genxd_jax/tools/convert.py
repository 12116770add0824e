"""Convert GenXD checkpoints between the released (diffusers, safetensors) layout and Orbax.

    # released UNet or VAE directory -> Orbax checkpoint (config.json + params/)
    python -m genxd_jax.tools.convert to-orbax ckpt/unet out/unet_orbax
    # Orbax -> released layout (bit-exact round trip)
    python -m genxd_jax.tools.convert to-released out/unet_orbax ckpt2/unet [--max-shard-gb 5]
    # Stable Video Diffusion UNet -> GenXD UNet initialised as the official code does
    python -m genxd_jax.tools.convert from-svd svd/unet genxd_init/unet [--config genxd_unet_config.json]

The model kind (UNet or VAE) is read from `config.json` (`_class_name`).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import orbax.checkpoint as ocp
from flax import nnx

from genxd_jax.convert.safetensors_io import CheckpointError, read_released_dir, write_released_dir
from genxd_jax.convert.svd_init import init_unet_from_svd
from genxd_jax.convert.torch_layout import flat_torch_state, load_torch_state
from genxd_jax.models.unet import UNetConfig, abstract_unet, build_unet
from genxd_jax.models.vae import VAEConfig, abstract_vae

UNET_CLASSES = {"UNetMVTemporalConditionModel"}
VAE_CLASSES = {"AutoencoderKLTemporalDecoder"}


def abstract_model(config: dict):
    """The abstract model (no memory) a released config describes."""
    kind = config.get("_class_name")
    if kind in VAE_CLASSES:
        cfg = VAEConfig.from_dict(config)
        return abstract_vae(cfg)
    if kind in UNET_CLASSES or kind is None:
        cfg = UNetConfig.from_dict(config)
        return abstract_unet(cfg)
    raise CheckpointError(f"config.json names {kind!r}; expected one of {sorted(UNET_CLASSES | VAE_CLASSES)}")


def to_orbax(src: pathlib.Path, dst: pathlib.Path) -> None:
    config, tensors = read_released_dir(src)
    model = load_torch_state(abstract_model(config), tensors, source=str(src), progress=True)
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save((dst / "params").absolute(), nnx.state(model, nnx.Param), force=True)
    print(f"wrote {dst} ({len(tensors)} arrays)")


def load_orbax(src: pathlib.Path):
    """The model stored by `to_orbax` (parameters restored into its abstract state)."""
    config = json.loads((src / "config.json").read_text())
    model = abstract_model(config)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    with ocp.StandardCheckpointer() as ckptr:
        restored = ckptr.restore((src / "params").absolute(), params)
    return config, nnx.merge(graphdef, restored, rest)


def to_released(src: pathlib.Path, dst: pathlib.Path, max_shard_bytes: int | None) -> None:
    config, model = load_orbax(src)
    tensors = flat_torch_state(model, progress=True)
    write_released_dir(dst, config, tensors, max_shard_bytes=max_shard_bytes)
    print(f"wrote {dst} ({len(tensors)} arrays)")


def from_svd(svd_dir: pathlib.Path, dst: pathlib.Path, config_path: pathlib.Path | None, seed: int) -> None:
    _, svd = read_released_dir(svd_dir)
    svd_config = json.loads((svd_dir / "config.json").read_text())
    if config_path is not None:
        config = UNetConfig.from_json(config_path)
    else:  # same network shape as the SVD UNet, GenXD's 15 input channels and 512-wide added ids
        config = UNetConfig.from_dict({
            "block_out_channels": svd_config["block_out_channels"],
            "layers_per_block": svd_config.get("layers_per_block", 2),
            "transformer_layers_per_block": svd_config.get("transformer_layers_per_block", 1),
            "num_attention_heads": svd_config["num_attention_heads"],
            "down_block_types": [t.replace("SpatioTemporal", "MVCascadeTemporal")
                                 for t in svd_config["down_block_types"]],
            "up_block_types": [t.replace("SpatioTemporal", "MVCascadeTemporal")
                               for t in svd_config["up_block_types"]],
        })
    unet, report = init_unet_from_svd(build_unet(config, seed=seed), svd)
    write_released_dir(dst, config.to_dict(), flat_torch_state(unet, progress=True))
    print(f"wrote {dst}: {len(report.copied)} copied, {len(report.adapted)} adapted, {len(report.fresh)} fresh, "
          f"{len(report.dropped)} SVD tensors dropped")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("to-orbax", help="released layout -> Orbax")
    p.add_argument("src", type=pathlib.Path)
    p.add_argument("dst", type=pathlib.Path)
    p = sub.add_parser("to-released", help="Orbax -> released layout")
    p.add_argument("src", type=pathlib.Path)
    p.add_argument("dst", type=pathlib.Path)
    p.add_argument("--max-shard-gb", type=float, default=None, help="shard the safetensors above this size")
    p = sub.add_parser("from-svd", help="SVD UNet -> GenXD UNet (official initialisation)")
    p.add_argument("src", type=pathlib.Path, help="released-layout SVD unet/ directory")
    p.add_argument("dst", type=pathlib.Path)
    p.add_argument("--config", type=pathlib.Path, default=None, help="GenXD UNet config.json (default: SVD's shape)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fresh motion-embedding initialisation")
    args = parser.parse_args(argv)
    try:
        if args.command == "to-orbax":
            to_orbax(args.src, args.dst)
        elif args.command == "to-released":
            to_released(args.src, args.dst,
                        None if args.max_shard_gb is None else int(args.max_shard_gb * 2**30))
        else:
            from_svd(args.src, args.dst, args.config, args.seed)
    except (CheckpointError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
