"""Checkpoint input/output: released layout round trips, strict errors, Orbax conversion, SVD initialisation."""

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from genxd_jax.convert import CheckpointError, flat_torch_state
from genxd_jax.convert.svd_init import init_unet_from_svd
from genxd_jax.models import UNetConfig, build_unet, load_unet, load_vae, save_pretrained
from genxd_jax.tools import convert, inspect_model

WEIGHTS = "diffusion_pytorch_model.safetensors"


@pytest.fixture()
def unet_dir(tiny_a, tmp_path):
    dst = tmp_path / "unet"
    shutil.copytree(tiny_a / "unet", dst)
    return dst


def _edit(directory, fn):
    tensors = load_file(str(directory / WEIGHTS))
    fn(tensors)
    save_file(tensors, str(directory / WEIGHTS))


def test_load_save_load_is_bit_exact(tiny_a, tmp_path):
    unet = load_unet(tiny_a / "unet")
    save_pretrained(unet, tmp_path / "unet")
    original = load_file(str(tiny_a / "unet" / WEIGHTS))
    again = flat_torch_state(load_unet(tmp_path / "unet"))
    assert set(again) == set(original)
    for key, value in original.items():
        assert again[key].dtype == value.dtype
        np.testing.assert_array_equal(again[key], value, err_msg=key)
    # The file itself is byte-identical to the released one.
    assert (tmp_path / "unet" / WEIGHTS).read_bytes() == (tiny_a / "unet" / WEIGHTS).read_bytes()


def test_vae_round_trip(tiny_a, tmp_path):
    save_pretrained(load_vae(tiny_a / "vae"), tmp_path / "vae")
    a, b = load_file(str(tiny_a / "vae" / WEIGHTS)), flat_torch_state(load_vae(tmp_path / "vae"))
    assert set(a) == set(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_sharded_checkpoint_round_trip(tiny_a, tmp_path):
    unet = load_unet(tiny_a / "unet")
    save_pretrained(unet, tmp_path / "sharded", max_shard_bytes=2_000_000)
    index = json.loads((tmp_path / "sharded" / (WEIGHTS + ".index.json")).read_text())
    assert len(set(index["weight_map"].values())) >= 3
    assert not (tmp_path / "sharded" / WEIGHTS).exists()
    again = flat_torch_state(load_unet(tmp_path / "sharded"))
    for key, value in flat_torch_state(unet).items():
        np.testing.assert_array_equal(again[key], value)
    # A missing shard is named in the error.
    shard = sorted(set(index["weight_map"].values()))[1]
    (tmp_path / "sharded" / shard).unlink()
    with pytest.raises(CheckpointError, match=shard):
        load_unet(tmp_path / "sharded")


def test_missing_key_is_reported(unet_dir):
    _edit(unet_dir, lambda t: t.pop("mid_block.resnets.1.mv_res_block.conv2.bias"))
    with pytest.raises(CheckpointError, match=r"1 missing keys:\s+mid_block.resnets.1.mv_res_block.conv2.bias"):
        load_unet(unet_dir)


def test_unexpected_key_is_reported(unet_dir):
    _edit(unet_dir, lambda t: t.update({"down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight":
                                        np.zeros((32, 32), np.float32)}))
    with pytest.raises(CheckpointError, match=r"(?s)1 unexpected keys:.*attn2.to_k.weight"):
        load_unet(unet_dir)


def test_shape_mismatch_is_reported_in_pytorch_layout(unet_dir):
    _edit(unet_dir, lambda t: t.update({"conv_in.weight": np.zeros((32, 8, 3, 3), np.float32)}))
    with pytest.raises(CheckpointError, match=r"conv_in.weight: .* has \(32, 8, 3, 3\), model needs \(32, 15, 3, 3\)"):
        load_unet(unet_dir)


def test_all_problems_reported_together(unet_dir):
    def edit(t):
        t.pop("conv_out.bias")
        t["extra.weight"] = np.zeros(3, np.float32)
        t["conv_out.weight"] = np.zeros((4, 32, 1, 1), np.float32)
    _edit(unet_dir, edit)
    with pytest.raises(CheckpointError) as info:
        load_unet(unet_dir)
    message = str(info.value)
    assert "missing keys" in message and "unexpected keys" in message and "shape mismatches" in message


def test_truncated_file_is_reported(unet_dir):
    path = unet_dir / WEIGHTS
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_unet(unet_dir)


def test_pickle_file_is_refused_without_opening(unet_dir):
    (unet_dir / WEIGHTS).unlink()
    # Not even valid pickle: proves it is never opened.
    (unet_dir / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(CheckpointError, match=r"(?s)only pickled weights.*safetensors.torch"):
        load_unet(unet_dir)


def test_missing_config_is_reported(unet_dir):
    (unet_dir / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_unet(unet_dir)


def test_parameter_dtype_option(tiny_a):
    import jax.numpy as jnp
    unet = load_unet(tiny_a / "unet", dtype=jnp.bfloat16)
    assert unet.conv_in.kernel[...].dtype == jnp.bfloat16


def test_convert_cli_orbax_round_trip(tiny_a, tmp_path, capsys):
    assert convert.main(["to-orbax", str(tiny_a / "unet"), str(tmp_path / "orbax")]) == 0
    assert convert.main(["to-released", str(tmp_path / "orbax"), str(tmp_path / "back")]) == 0
    assert (tmp_path / "back" / WEIGHTS).read_bytes() == (tiny_a / "unet" / WEIGHTS).read_bytes()
    assert convert.main(["to-orbax", str(tmp_path / "nowhere"), str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_svd_initialisation_matches_official(fixtures_dir, tmp_path):
    root = fixtures_dir / "svd-init-tiny"
    sources = json.loads((root / "sources.json").read_text())
    svd = load_file(str(root / "svd_unet" / WEIGHTS))
    official = load_file(str(root / "genxd_unet" / WEIGHTS))
    config = UNetConfig.from_json(root / "genxd_unet" / "config.json")
    unet, report = init_unet_from_svd(build_unet(config, seed=1), svd)
    ours = flat_torch_state(unet)
    assert set(ours) == set(official)
    for key, how in sources["from_svd"].items():
        np.testing.assert_array_equal(ours[key], official[key], err_msg=f"{key} ({how['how']})")
    assert set(report.copied) | set(report.adapted) == set(sources["from_svd"])
    assert set(report.dropped) == set(sources["svd_keys_dropped"])
    assert set(report.fresh) == set(sources["genxd_keys_not_from_svd"])
    for key in report.fresh:
        if key.endswith("spatial_mv_factor"):
            assert ours[key].tolist() == [0.5]
        elif key.endswith("gamma"):
            assert ours[key].tolist() == [5.0]
    assert np.all(ours["conv_in.weight"][:, 8:] == 0)


def test_svd_cli(fixtures_dir, tmp_path):
    root = fixtures_dir / "svd-init-tiny"
    assert convert.main(["from-svd", str(root / "svd_unet"), str(tmp_path / "genxd")]) == 0
    unet = load_unet(tmp_path / "genxd")
    official = load_file(str(root / "genxd_unet" / WEIGHTS))
    np.testing.assert_array_equal(flat_torch_state(unet)["conv_in.weight"], official["conv_in.weight"])


def test_inspect_model_full_config_is_abstract_and_exact(fixtures_dir, capsys):
    import time
    start = time.perf_counter()
    assert inspect_model.main(["--unet-config", str(fixtures_dir / "official-config" / "unet_config.json")]) == 0
    elapsed = time.perf_counter() - start
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "params=1932125520 arrays=1770"
    table = {line.split()[0]: line.split()[1:] for line in lines[1:-2]}
    assert table["down_blocks.0"] == ["192", "26,377,288"]
    assert table["up_blocks.1"] == ["293", "626,241,292"]
    assert elapsed < 60  # abstract: about 3 s here; materialising 7.7 GB would take far longer
