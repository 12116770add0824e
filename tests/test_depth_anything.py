"""Depth Anything V2 in NNX against Hugging Face transformers' PyTorch implementation (random tiny weights).

The reference is `transformers.DepthAnythingForDepthEstimation` built from a tiny config; its `state_dict()` is
saved with safetensors and loaded through `genxd_jax.convert.depth_anything`, so the key map, the layouts and
every layer are checked together. torch and transformers are test extras only.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch  # test extra (setup.py): a missing install fails loudly rather than skipping
import transformers
from safetensors.numpy import load_file as np_load_file
from safetensors.numpy import save_file as np_save_file

from genxd_jax.convert.depth_anything import (
    convert_original_checkpoint,
    infer_config,
    load_network,
)
from genxd_jax.convert.safetensors_io import CheckpointError
from genxd_jax.curation.depth_anything import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VARIANTS,
    DepthAnythingV2,
    abstract_depth_anything,
    bicubic_matrix,
    load_depth_anything,
    network_input_size,
    preprocess,
)
from genxd_jax.resampling import linear_resize_matrix
from genxd_jax.tools import convert_depth

TOL = 1e-4
HIDDEN, HEADS, LAYERS = 32, 2, 4


def _hf_model(depth_type: str = "relative", seed: int = 0):
    backbone = transformers.Dinov2Config(
        hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS, mlp_ratio=4, image_size=56,
        patch_size=14, out_indices=[1, 2, 3, 4], apply_layernorm=True, reshape_hidden_states=False)
    config = transformers.DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=HIDDEN, neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16, head_hidden_size=8, patch_size=14, depth_estimation_type=depth_type,
        max_depth=20 if depth_type == "metric" else 1)
    torch.manual_seed(seed)
    model = transformers.DepthAnythingForDepthEstimation(config).eval()
    with torch.no_grad():  # He-scaled weights so that the output varies at O(1), not 1e-4 (default init)
        for name, p in model.named_parameters():
            if p.ndim >= 2 and "token" not in name and "position" not in name:
                fan_in = p[0].numel() if "resize" not in name or p.shape[-1] == 3 else p.shape[0]
                p.copy_(torch.randn_like(p) * (1.5 / fan_in) ** 0.5)
            else:  # biases, norms, LayerScale, tokens, position embeddings
                p.copy_((1.0 if name.endswith("norm1.weight") or name.endswith("norm2.weight")
                         or "layernorm.weight" in name or "lambda1" in name else 0.0) + 0.3 * torch.randn_like(p))
        model.head.conv3.weight.mul_(0.3)  # keep the final ReLU mostly active so the comparison sees values
        model.head.conv3.bias.fill_(2.0)
    return model


def _save_hf(model, directory: pathlib.Path, *, keys=None) -> pathlib.Path:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if keys is not None:
        state = {keys(k): v for k, v in state.items()}
    save_file(state, str(directory / "model.safetensors"))
    model.config.save_pretrained(str(directory))
    return directory


def _torch_predict(model, pixels_nhwc: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(pixel_values=torch.from_numpy(pixels_nhwc.transpose(0, 3, 1, 2).copy())).predicted_depth.numpy()


def _assert_close(ours, ref, tol=TOL):
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape
    assert np.isfinite(ours).all()
    assert np.mean(ref > 0) > 0.5 and ref.std() > 1e-3, "reference output is degenerate; the test would be weak"
    np.testing.assert_allclose(ours, ref, atol=tol, rtol=0)


@pytest.fixture(scope="module")
def hf_model():
    return _hf_model()


@pytest.fixture(scope="module")
def weights_dir(hf_model, tmp_path_factory):
    return _save_hf(hf_model, tmp_path_factory.mktemp("da2_tiny"))


@pytest.fixture(scope="module")
def depth_model(weights_dir):
    return load_depth_anything(weights_dir, input_size=56)


def test_network_parity_nonsquare_and_square(hf_model, depth_model):
    """The jitted network matches transformers on a non-square input (bicubic position-embedding resize,
    odd patch grids through the stride-2 reassemble conv) and on the pre-training size (no resize)."""
    from genxd_jax.curation.depth_anything import _predict

    rng = np.random.default_rng(0)
    for shape in ((2, 70, 98, 3), (1, 56, 56, 3)):
        pixels = rng.standard_normal(shape).astype(np.float32)
        ours = _predict(depth_model._graphdef, depth_model._state, jnp.asarray(pixels), shape[1:3])
        _assert_close(ours, _torch_predict(hf_model, pixels))


def test_depth_model_protocol_end_to_end(hf_model, depth_model):
    """uint8 frame -> official preprocessing -> network -> bilinear (align_corners) resize back, vs torch."""
    rgb = np.random.default_rng(1).integers(0, 256, (30, 45, 3), dtype=np.uint8)
    out = depth_model(rgb)
    assert out.shape == (30, 45) and out.dtype == np.float32
    assert depth_model.kind == "disparity"
    pixels = preprocess(rgb, 56)
    assert pixels.shape == (56, 84, 3)
    with torch.no_grad():
        pred = hf_model(pixel_values=torch.from_numpy(pixels.transpose(2, 0, 1)[None].copy())).predicted_depth
        ref = torch.nn.functional.interpolate(pred[:, None], (30, 45), mode="bilinear", align_corners=True)[0, 0]
    _assert_close(out, ref.numpy())
    stack = depth_model.predict(np.stack([rgb, rgb[::-1]]), batch_size=2)
    np.testing.assert_allclose(stack[0], out, atol=1e-5)
    assert not np.allclose(stack[1], out)


def test_metric_head_and_legacy_hub_key_names(tmp_path):
    """Hub files spell attention `attention.attention.query` / `attention.output.dense`; the metric head is
    sigmoid × max_depth and reports kind "depth"."""
    model = _hf_model("metric", seed=3)

    def legacy(key):
        return (key.replace(".attention.q_proj.", ".attention.attention.query.")
                .replace(".attention.k_proj.", ".attention.attention.key.")
                .replace(".attention.v_proj.", ".attention.attention.value.")
                .replace(".attention.o_proj.", ".attention.output.dense."))

    directory = _save_hf(model, tmp_path / "legacy", keys=legacy)
    assert any(".attention.attention.query." in k for k in np_load_file(str(directory / "model.safetensors")))
    net = load_network(directory)
    assert net.config.kind == "depth" and net.config.max_depth == 20
    pixels = np.random.default_rng(2).standard_normal((1, 42, 70, 3)).astype(np.float32)
    ref = _torch_predict(model, pixels)
    assert ref.max() <= 20 and ref.min() >= 0
    _assert_close(jax.jit(lambda x: net(x))(jnp.asarray(pixels)), ref)


def test_network_input_size_follows_official_rule():
    # shorter side to 518, aspect kept, sides rounded (half to even) to multiples of 14, never below 518
    assert network_input_size(480, 640) == (518, 686)
    assert network_input_size(640, 480) == (686, 518)
    assert network_input_size(256, 256) == (518, 518)
    assert network_input_size(1080, 1920) == (518, 924)
    assert network_input_size(518, 525) == (518, 532)  # 525/14 = 37.5 -> 38 (even)
    assert network_input_size(518, 539) == (518, 532)  # 539/14 = 38.5 -> 38 (even), not 39
    assert network_input_size(100, 103, input_size=56) == (56, 56)  # 57.68/14 = 4.12 -> 4
    for h, w in ((37, 1000), (999, 518), (300, 301)):
        nh, nw = network_input_size(h, w)
        assert nh % 14 == 0 and nw % 14 == 0 and min(nh, nw) >= 518
    with pytest.raises(ValueError, match="positive"):
        network_input_size(0, 10)


def test_preprocess_normalises_and_rejects_bad_frames():
    const = np.full((20, 30, 3), (255, 128, 0), np.uint8)
    out = preprocess(const, 28)
    assert out.shape == (28, 42, 3) and out.dtype == np.float32
    want = (np.array([255, 128, 0]) / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(out, np.broadcast_to(want, out.shape), atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        preprocess(const.astype(np.float32), 28)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        preprocess(const[..., :2], 28)


def test_interpolation_matrices_match_torch():
    x = torch.randn(1, 1, 5, 7, dtype=torch.float64)
    cases = (((9, 4), "bicubic", False, bicubic_matrix),
             ((11, 15), "bilinear", True, lambda i, o: linear_resize_matrix(i, o, "align_corners")),
             ((3, 13), "bilinear", False, lambda i, o: linear_resize_matrix(i, o, "half_pixel")),
             ((4, 1), "bilinear", True, lambda i, o: linear_resize_matrix(i, o, "align_corners")))
    for (h, w), mode, aligned, builder in cases:
        ref = torch.nn.functional.interpolate(x, (h, w), mode=mode, align_corners=aligned)[0, 0].numpy()
        ours = builder(5, h) @ x[0, 0].numpy() @ builder(7, w).T
        np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_original_position_interpolation_matches_torch_scale_factor(weights_dir, depth_model):
    """interpolate_offset=0.1 is the original DINOv2 code's `interpolate(scale_factor=((h+0.1)/g, (w+0.1)/g))`."""
    grid = torch.randn(1, 3, 37, 37, dtype=torch.float64)
    for h, w in ((37, 66), (50, 37)):
        ref = torch.nn.functional.interpolate(grid, scale_factor=((h + 0.1) / 37, (w + 0.1) / 37), mode="bicubic")
        assert ref.shape[-2:] == (h, w)
        ours = np.einsum("oh,chw,pw->cop", bicubic_matrix(37, h, (h + 0.1) / 37), grid[0].numpy(),
                         bicubic_matrix(37, w, (w + 0.1) / 37))
        np.testing.assert_allclose(ours, ref[0].numpy(), atol=1e-12)
    original = load_network(weights_dir, interpolate_offset=0.1)
    emb, ref_emb = original.backbone.embeddings, depth_model.model.backbone.embeddings
    a, b = np.asarray(emb.position_encoding(70, 98)), np.asarray(ref_emb.position_encoding(70, 98))
    assert a.shape == b.shape == (1, 1 + 5 * 7, HIDDEN)
    assert 1e-4 < np.abs(a - b).max() < 0.5 * np.abs(b).max()  # a small but real difference
    np.testing.assert_array_equal(emb.position_encoding(56, 56), ref_emb.position_encoding(56, 56))


def test_loader_reports_every_key_and_shape_problem(hf_model, tmp_path):
    state = {k: v.numpy() for k, v in hf_model.state_dict().items()}
    state.pop("neck.convs.1.weight")
    state["head.extra.weight"] = np.zeros(3, np.float32)
    state["head.conv1.bias"] = np.zeros(5, np.float32)
    bad = tmp_path / "bad"
    bad.mkdir()
    np_save_file(state, str(bad / "model.safetensors"))
    (bad / "config.json").write_text(json.dumps(hf_model.config.to_dict()))
    with pytest.raises(CheckpointError) as err:
        load_depth_anything(bad)
    msg = str(err.value)
    assert str(bad / "model.safetensors") in msg
    assert "neck.convs.1.weight" in msg and "head.extra.weight" in msg and "head.conv1.bias" in msg
    assert "(5,)" in msg and "(8,)" in msg  # what the file has and what the model needs

    (tmp_path / "model.pth").write_bytes(b"not unpickled")
    with pytest.raises(CheckpointError, match="convert_depth from-pth"):
        load_depth_anything(tmp_path / "model.pth")
    junk = tmp_path / "junk"
    junk.mkdir()
    np_save_file({"weight": np.zeros(2, np.float32)}, str(junk / "model.safetensors"))
    with pytest.raises(CheckpointError, match="not a Depth Anything"):
        load_depth_anything(junk)
    with pytest.raises(CheckpointError, match="do not exist"):
        load_depth_anything(tmp_path / "missing")


def test_minimal_hub_config_is_completed_from_shapes(hf_model):
    """Hub config.json files state only what differs from transformers' defaults; the rest comes from shapes."""
    tensors = {k: v.numpy() for k, v in hf_model.state_dict().items()}
    minimal = {"model_type": "depth_anything", "backbone_config": {
        "model_type": "dinov2", "hidden_size": HIDDEN, "num_attention_heads": HEADS, "image_size": 56,
        "out_features": ["stage1", "stage2", "stage3", "stage4"], "reshape_hidden_states": False},
        "fusion_hidden_size": 16, "neck_hidden_sizes": [8, 16, 32, 32], "reassemble_hidden_size": HIDDEN}
    config = infer_config(tensors, hf_config=minimal)
    assert (config.num_hidden_layers, config.mlp_hidden_size, config.head_hidden_size) == (LAYERS, 4 * HIDDEN, 8)
    assert config.out_indices == (1, 2, 3, 4) and config.num_attention_heads == HEADS
    assert config.kind == "disparity"
    metric = infer_config(tensors, hf_config={**minimal, "depth_estimation_type": "metric", "max_depth": 80})
    assert metric.kind == "depth" and metric.max_depth == 80
    with pytest.raises(CheckpointError, match="swiglu"):
        infer_config(tensors, hf_config={"backbone_config": {"use_swiglu_ffn": True}})


@pytest.mark.parametrize("variant", ["small", "large"])
def test_config_inferred_from_weight_shapes(variant):
    """Without config.json the released architectures are recovered from the shapes alone."""
    from flax import nnx

    from genxd_jax.convert.torch_layout import to_torch_layout, torch_key

    config = VARIANTS[variant]
    abstract = abstract_depth_anything(config)
    shapes = {torch_key(tuple(p)): to_torch_layout(tuple(p), np.empty(v.get_value().shape, np.uint8)).shape
              for p, v in nnx.to_flat_state(nnx.state(abstract, nnx.Param))}
    tensors = {k: np.broadcast_to(np.float32(0), s) for k, s in shapes.items()}  # shapes only, no memory
    assert infer_config(tensors) == config


def test_original_pth_conversion(hf_model, tmp_path):
    """An original-release state dict (names as in DepthAnything/Depth-Anything-V2's `DepthAnythingV2`) goes
    through `from-pth` and reproduces the transformers model."""
    sd = hf_model.state_dict()
    original = {
        "pretrained.cls_token": sd["backbone.embeddings.cls_token"],
        "pretrained.mask_token": sd["backbone.embeddings.mask_token"],
        "pretrained.pos_embed": sd["backbone.embeddings.position_embeddings"],
        "pretrained.norm.weight": sd["backbone.layernorm.weight"],
        "pretrained.norm.bias": sd["backbone.layernorm.bias"],
    }
    for suffix in ("weight", "bias"):
        patch = f"backbone.embeddings.patch_embeddings.projection.{suffix}"
        original[f"pretrained.patch_embed.proj.{suffix}"] = sd[patch]
        for i in range(LAYERS):
            hf = f"backbone.encoder.layer.{i}"
            original[f"pretrained.blocks.{i}.attn.qkv.{suffix}"] = torch.cat(
                [sd[f"{hf}.attention.{n}.{suffix}"] for n in ("q_proj", "k_proj", "v_proj")])
            original[f"pretrained.blocks.{i}.attn.proj.{suffix}"] = sd[f"{hf}.attention.o_proj.{suffix}"]
            for name in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
                original[f"pretrained.blocks.{i}.{name}.{suffix}"] = sd[f"{hf}.{name}.{suffix}"]
        for i in range(4):
            hf = f"neck.reassemble_stage.layers.{i}"
            original[f"depth_head.projects.{i}.{suffix}"] = sd[f"{hf}.projection.{suffix}"]
            if i != 2:
                original[f"depth_head.resize_layers.{i}.{suffix}"] = sd[f"{hf}.resize.{suffix}"]
        for k in range(1, 5):  # refinenet4 is the coarsest = fusion layer 0
            hf = f"neck.fusion_stage.layers.{4 - k}"
            original[f"depth_head.scratch.refinenet{k}.out_conv.{suffix}"] = sd[f"{hf}.projection.{suffix}"]
            for u in (1, 2):
                for c in (1, 2):
                    original[f"depth_head.scratch.refinenet{k}.resConfUnit{u}.conv{c}.{suffix}"] = sd[
                        f"{hf}.residual_layer{u}.convolution{c}.{suffix}"]
        original[f"depth_head.scratch.output_conv1.{suffix}"] = sd[f"head.conv1.{suffix}"]
        original[f"depth_head.scratch.output_conv2.0.{suffix}"] = sd[f"head.conv2.{suffix}"]
        original[f"depth_head.scratch.output_conv2.2.{suffix}"] = sd[f"head.conv3.{suffix}"]
    for i in range(LAYERS):
        for s in (1, 2):
            original[f"pretrained.blocks.{i}.ls{s}.gamma"] = sd[f"backbone.encoder.layer.{i}.layer_scale{s}.lambda1"]
    for k in range(1, 5):
        original[f"depth_head.scratch.layer{k}_rn.weight"] = sd[f"neck.convs.{k - 1}.weight"]
    assert len(original) == len(sd) - 4 * LAYERS  # q, k, v weight+bias fused into qkv weight+bias
    pth = tmp_path / "depth_anything_v2_tiny.pth"
    torch.save({k: v.clone() for k, v in original.items()}, str(pth))

    out = tmp_path / "converted"
    assert convert_depth.main(["from-pth", str(pth), str(out)]) == 1  # width 32: heads not width / 64
    assert convert_depth.main(["from-pth", str(pth), str(out), "--num-heads", str(HEADS)]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["backbone_config"]["out_indices"] == [1, 2, 3, 4]  # last four blocks for a 4-block ViT
    net = load_network(out)
    pixels = np.random.default_rng(4).standard_normal((1, 56, 84, 3)).astype(np.float32)
    _assert_close(jax.jit(lambda x: net(x))(jnp.asarray(pixels)), _torch_predict(hf_model, pixels))
    # the written config.json is a transformers config: the reference model loads from it as well
    reloaded = transformers.DepthAnythingConfig.from_pretrained(str(out))
    assert reloaded.backbone_config.hidden_size == HIDDEN and list(reloaded.neck_hidden_sizes) == [8, 16, 32, 32]

    original["depth_head.readout_projects.0.0.weight"] = torch.zeros(2, 2)
    torch.save(original, str(tmp_path / "bad.pth"))
    with pytest.raises(CheckpointError, match="readout_projects"):
        convert_original_checkpoint(tmp_path / "bad.pth", tmp_path / "bad_out")
    assert not (tmp_path / "bad_out").exists()


def test_inspect_cli(weights_dir, capsys):
    assert convert_depth.main(["inspect", str(weights_dir)]) == 0
    text = capsys.readouterr().out
    assert "output disparity" in text and "hidden_size = 32" in text and "num_attention_heads = 2" in text
    assert convert_depth.main(["inspect", str(weights_dir / "nope")]) == 1


def test_predict_cli_writes_npy_and_preview(weights_dir, depth_model, tmp_path, capsys):
    import cv2

    rgb = np.random.default_rng(5).integers(0, 256, (30, 45, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "frame.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out" / "frame_disparity.npy"
    argv = ["predict", str(weights_dir), str(tmp_path / "frame.png"), str(out), "--input-size", "56"]
    assert convert_depth.main(argv) == 0
    np.testing.assert_allclose(np.load(out), depth_model(rgb), atol=1e-6)
    assert cv2.imread(str(out.with_suffix(".png"))).shape == (30, 45, 3)
    assert sorted(p.name for p in out.parent.iterdir()) == ["frame_disparity.npy", "frame_disparity.png"]
    assert convert_depth.main(["predict", str(weights_dir), str(tmp_path / "none.png"), str(out)]) == 1
    assert "cannot read image" in capsys.readouterr().err


def test_protocol_and_curation_loader(depth_model, weights_dir):
    from genxd_jax.curation.depth import DepthModel, load_depth_model

    assert isinstance(depth_model, DepthModel)
    loaded = load_depth_model(f"da2:{weights_dir}")  # what `curate --depth-model da2:WEIGHTS` calls
    assert isinstance(loaded, DepthAnythingV2) and loaded.kind == "disparity" and loaded.input_size == 518
    assert isinstance(depth_model, DepthAnythingV2)
    assert dataclasses.is_dataclass(depth_model.config)
