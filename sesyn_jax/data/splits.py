"""The train and test splits a config names: MOCAP-SYN built in memory from the embedded clips,
or a SYN JSON dataset on disk (data.root/train and data.root/test, or data.train_dir and
data.test_dir)."""

from __future__ import annotations

import os

from sesyn_jax.data import mocap_syn, render, syn_json


def data_dirs(config) -> tuple[str, str]:
    """(train folder, test folder) of a 'syn' source ('' where not set)."""
    d = config.data
    train_dir = d.train_dir or (os.path.join(d.root, "train") if d.root else "")
    test_dir = d.test_dir or (os.path.join(d.root, "test") if d.root else "")
    return train_dir, test_dir


def build_config(config) -> mocap_syn.BuildConfig:
    d = config.data
    return mocap_syn.BuildConfig(
        frames=d.frames,
        seed=d.seed,
        camera_pairs=d.camera_pairs,
        max_offset=d.max_offset,
        protocol=d.protocol,
    )


def augment(config) -> render.Augment:
    """data.augment as ``render.Augment`` (checked: a ValueError names the bad field)."""
    fields = dict(config.data.augment)
    fields["sizes"] = tuple(tuple(int(x) for x in s) for s in fields.get("sizes", ()))
    return render.Augment(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


def load_pairs(config, split: str, fresh_crops: bool = False, min_length: int = 32):
    """The pairs of one split ('train' or 'test') as the config names them. ``fresh_crops``:
    under the embedded 'independent' protocol, a dataset cropped anew every training epoch;
    with data.render, pairs rendered anew from the training clips' 3D motion (new cameras,
    crops and corruptions, ``render.RenderedPairs``; views of at least ``min_length``
    frames)."""
    d = config.data
    if d.source == "embedded":
        cfg = build_config(config)
        if fresh_crops and d.render and split == "train":
            clips = [c for c in mocap_syn.load_embedded() if c.name not in cfg.test_clips]
            return render.RenderedPairs(
                clips, cfg, augment(config), d.pairs_per_epoch, d.seed, min_length
            )
        if fresh_crops and d.protocol == "independent":
            return mocap_syn.embedded_fresh_crops(cfg, split)
        return mocap_syn.embedded_pairs(cfg, split)
    folder = data_dirs(config)[0 if split == "train" else 1]
    return syn_json.load_split(folder, d.pairing, cache=d.cache)
