"""PyTorch <-> Flax conversion: round trips, strict loading, errors, command line."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sesyn_jax import checkpoint, convert, convert_cli, parity  # noqa: E402
from sesyn_jax.model import STGCNEmbedding  # noqa: E402
from sesyn_jax.torch_model import build_torch_model, poses_to_torch_layout  # noqa: E402

SMALL = dict(layout="coco", strategy="spatial", widths=(8, 8, 16, 16), kernel_size=5, in_channels=3)


@pytest.fixture(scope="module")
def torch_state():
    tm = parity.perturb_torch_model(
        build_torch_model(**SMALL), seed=5, calibrate_on=parity.make_poses(20, 9)
    )
    return tm, {k: v.clone() for k, v in tm.state_dict().items()}


def test_published_key_set_and_shapes():
    sd = build_torch_model().state_dict()
    assert sd["A"].shape == (3, 17, 17)
    assert sd["st_gcn_networks.0.gcn.conv.weight"].shape == (192, 3, 1, 1)
    assert sd["st_gcn_networks.4.residual.0.weight"].shape == (128, 64, 1, 1)
    assert sd["st_gcn_networks.8.tcn.2.weight"].shape == (128, 128, 9, 1)
    assert sd["channel.ChannelGate.mlp.1.weight"].shape == (8, 17)
    assert sd["channel.ChannelGate.mlp.3.weight"].shape == (17, 8)
    assert sd["mlp.multi_layer.0.weight"].shape == (1, 2, 1, 1)
    n_used = sum(
        v.numel()
        for k, v in build_torch_model().named_parameters()
        if not k.startswith(("channel.", "mlp."))
    )
    assert n_used == 1_167_009


def test_round_trip_bit_identical_and_strict_load(torch_state):
    tm, sd = torch_state
    variables, unused = convert.torch_to_flax(
        {"model": sd, "epoch": 3, "optimizer": {}}, return_unused=True
    )
    back = convert.flax_to_torch(variables, unused)
    assert set(back) == set(sd)
    for k in sd:
        assert torch.equal(back[k], sd[k]), k
    fresh = build_torch_model(**SMALL)
    fresh.load_state_dict(back, strict=True)
    # without the carried tensors, the unused ones are re-created and strict loading still works
    back2 = convert.flax_to_torch(variables)
    fresh.load_state_dict(back2, strict=True)


def test_numpy_state_dict_and_eval_outputs_agree(torch_state):
    tm, sd = torch_state
    variables = convert.torch_to_flax({k: v.numpy() for k, v in sd.items()})
    poses = parity.make_poses(25, 1)
    tm.eval()
    with torch.no_grad():
        ref = tm(torch.from_numpy(poses_to_torch_layout(poses))).numpy()
    out = np.asarray(STGCNEmbedding(**SMALL).apply(variables, jnp.asarray(poses)))
    assert parity.diff(out, ref)[1] <= 1e-5


def test_errors_name_the_keys(torch_state):
    _, sd = torch_state
    bad = dict(sd)
    del bad["st_gcn_networks.1.tcn.2.bias"]
    with pytest.raises(
        convert.ConversionError, match=r"missing keys: \['st_gcn_networks.1.tcn.2.bias'\]"
    ):
        convert.torch_to_flax(bad)
    bad = dict(sd, **{"st_gcn_networks.1.extra.weight": torch.zeros(3)})
    with pytest.raises(
        convert.ConversionError, match="unexpected keys.*st_gcn_networks.1.extra.weight"
    ):
        convert.torch_to_flax(bad)
    bad = dict(sd)
    bad["st_gcn_networks.2.gcn.conv.weight"] = torch.zeros(48, 7, 1, 1)
    with pytest.raises(
        convert.ConversionError, match=r"st_gcn_networks.2.gcn.conv.weight: shape \(48, 7, 1, 1\)"
    ):
        convert.torch_to_flax(bad)
    bad = dict(sd)
    bad["A"] = sd["A"] * 2
    with pytest.raises(convert.ConversionError, match="'A' differs"):
        convert.torch_to_flax(bad)
    with pytest.raises(convert.ConversionError, match="no 'A'"):
        convert.torch_to_flax({"data_bn.weight": torch.ones(51)})
    with pytest.raises(convert.ConversionError, match="expected a state_dict"):
        convert.torch_to_flax([1, 2])


def test_command_line_both_ways(tmp_path, torch_state):
    _, sd = torch_state
    src = tmp_path / "published.pth"
    torch.save({"model": sd, "epoch": 7, "optimizer": {}}, src)
    out_dir = tmp_path / "flax_ckpt"
    assert convert_cli.main(["torch2flax", str(src), str(out_dir)]) == 0
    loaded = checkpoint.load_inference(str(out_dir))
    assert loaded.model_config["widths"] == (8, 8, 16, 16)
    np.testing.assert_array_equal(
        loaded.variables["params"]["block_3"]["tcn_conv"]["kernel"],
        sd["st_gcn_networks.3.tcn.2.weight"].numpy()[..., 0].transpose(2, 1, 0),
    )
    dst = tmp_path / "exported.pth"
    assert convert_cli.main(["flax2torch", str(out_dir), str(dst)]) == 0
    ck = torch.load(dst, weights_only=True)
    for k in sd:
        assert torch.equal(ck["model"][k], sd[k]), k
    # a malformed checkpoint: a clear error and exit status 2, nothing written
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    assert convert_cli.main(["torch2flax", str(junk), str(tmp_path / "x")]) == 2
    assert not os.path.exists(tmp_path / "x")
    with pytest.raises(checkpoint.CheckpointError, match="no model.json"):
        checkpoint.load_inference(str(tmp_path))


def test_pth_through_the_inference_loader_embeds_as_the_torch_network(tmp_path, torch_state):
    """loading.load_model on a .pth gives a model whose eval embeddings are the PyTorch
    network's (the path evaluate.py and sesyn-sync take)."""
    from sesyn_jax import loading

    tm, sd = torch_state
    path = tmp_path / "published.pth"
    torch.save({"model": sd}, path)
    loaded = loading.load_model(str(path))
    poses = parity.make_poses(30, 3)
    with torch.no_grad():
        want = tm.eval()(torch.from_numpy(poses_to_torch_layout(poses))).numpy()
    got = np.asarray(loaded.model().apply(loaded.variables, jnp.asarray(poses)))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    (tmp_path / "junk.pth").write_bytes(b"\x00" * 64)
    with pytest.raises(checkpoint.CheckpointError, match="not a checkpoint"):
        loading.load_model(str(tmp_path / "junk.pth"))  # told apart before torch reads it
    (tmp_path / "broken.pth").write_bytes(b"PK\x03\x04" + b"\x00" * 64)  # a broken zip
    with pytest.raises(convert.ConversionError, match="not a readable PyTorch checkpoint"):
        loading.load_model(str(tmp_path / "broken.pth"))


def test_non_zero_padding_is_not_exported():
    from sesyn_jax.model import init_variables

    cfg = dict(SMALL, padding="reflect")
    variables = init_variables(STGCNEmbedding(**cfg), __import__("jax").random.PRNGKey(0))
    with pytest.raises(convert.ConversionError, match="zero-pads"):
        convert.flax_to_torch(variables, model_config=cfg)
