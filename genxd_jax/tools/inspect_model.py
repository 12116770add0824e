"""Print the parameter table of a GenXD UNet built from a config, without allocating its weights.

    python -m genxd_jax.tools.inspect_model --unet-config unet/config.json [--depth 2]

The network is built under `nnx.eval_shape` (shapes and dtypes only). The last line is
`params=N arrays=M`.
"""

from __future__ import annotations

import argparse
import collections
import sys

import numpy as np
from flax import nnx

from genxd_jax.convert.torch_layout import torch_key
from genxd_jax.models.unet import abstract_unet


def parameter_table(module: nnx.Module, depth: int = 2) -> list[tuple[str, int, int]]:
    """(prefix, arrays, parameters) per torch-key prefix of `depth` components (list indices kept)."""
    groups: dict[str, list[int]] = collections.OrderedDict()
    for path, var in nnx.to_flat_state(nnx.state(module, nnx.Param)):
        key = torch_key(tuple(path)).split(".")
        cut = 0
        named = 0
        while cut < len(key) - 1 and named < depth:
            cut += 1
            if not key[cut - 1].isdigit():
                named += 1
        if cut < len(key) - 1 and key[cut].isdigit():
            cut += 1
        prefix = ".".join(key[:cut]) if cut else key[0]
        entry = groups.setdefault(prefix, [0, 0])
        entry[0] += 1
        entry[1] += int(np.prod(var.get_value().shape))
    return [(k, a, p) for k, (a, p) in groups.items()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unet-config", required=True, help="path to a UNet config.json")
    parser.add_argument("--depth", type=int, default=1, help="named key components per table row (default 1)")
    args = parser.parse_args(argv)
    try:
        model = abstract_unet(args.unet_config)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = parameter_table(model, args.depth)
    width = max(len(r[0]) for r in rows)
    print(f"{'block':<{width}}  {'arrays':>7}  {'parameters':>15}")
    for name, arrays, params in rows:
        print(f"{name:<{width}}  {arrays:>7}  {params:>15,}")
    total_arrays = sum(r[1] for r in rows)
    total = sum(r[2] for r in rows)
    print(f"{'total':<{width}}  {total_arrays:>7}  {total:>15,}")
    print(f"params={total} arrays={total_arrays}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
