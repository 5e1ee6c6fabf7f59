"""The synchronization model shipped in the package: it loads by name, carries its training
settings, gives the figures the README reports, and synchronizes two different cameras' views
of held-out motion through the sesyn-sync command."""

import json

import numpy as np
import pytest

from configs import sync_default
from sesyn_jax import evaluation, loading, sync
from sesyn_jax.data import normalization
from sesyn_jax.data.splits import load_pairs
from sesyn_jax.data.syn_json import write_syn_view

# the shipped model's offsets for the first 16 'independent' MOCAP-SYN-120 test pairs (diagonal
# search, |offset| <= 30), as evaluate.py --checkpoint default prints them; truth beside them
FIRST_16 = [-13, 0, -4, -20, 4, 23, -12, -29, 17, 23, -2, 1, 13, 13, -16, -12]
TRUTH_16 = [-12, -1, -4, -20, 4, 22, -12, -29, 17, 23, -2, 1, 13, 13, -16, -12]


@pytest.fixture(scope="module")
def loaded():
    return loading.load_model("default")


@pytest.fixture(scope="module")
def pairs():
    return load_pairs(sync_default.get_config(), "test")


def test_shipped_model_carries_its_settings(loaded):
    assert loaded.fps == 30.0 and loaded.normalization == "person"
    assert loaded.meta["inner_frames"] is True and loaded.inner_radius == 24
    cfg = sync_default.get_config()
    assert loaded.model_config["widths"] == tuple(cfg.model.widths)
    assert loaded.model_config["padding"] == cfg.model.padding


def test_shipped_model_gives_the_readme_figures(loaded, pairs):
    cfg = sync_default.get_config()
    first = pairs[:16]
    assert [p.offset for p in first] == TRUTH_16
    preds, m = evaluation.evaluator_for(loaded, cfg)(loaded.variables, first)
    assert preds.tolist() == FIRST_16
    assert m["frame_error"] == pytest.approx(3 / 16)


def test_two_cameras_through_the_command(loaded, pairs, tmp_path, capsys):
    """Two views of held-out pairs, from two different virtual cameras, written as SYN JSON
    files (pixels, each its own crop): the command's offset is the pair's true offset."""
    for k in (0, 5, 50, 90):
        p = pairs[k]
        for view, name in ((p.view1, "a.json"), (p.view2, "b.json")):
            write_syn_view(
                str(tmp_path / name), normalization.to_pixels(view, p.resolution), 0, p.resolution
            )
        code = sync.main([str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--json"])
        r = json.loads(capsys.readouterr().out)
        assert code == 0 and abs(r["offset_frames"] - p.offset) <= 1.0, (k, r, p.offset)
        assert np.isfinite(r["confidence"])
