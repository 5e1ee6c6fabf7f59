"""The shipped synchronization model: trained on pairs rendered afresh from the training clips'
3D motion (new cameras, portrait and landscape images, time-stretch, mirroring, detector-like
noise, independent crops), rendered on the devices from a key per step
(``data.render_on='device'``), the 'person' input normalization, and losses and offset search on
the frames whose temporal receptive field lies inside their sequence, so that no frame can tell
where its sequence ends.

  python train.py --config configs/sync_default.py --workdir runs/sync_default
  python evaluate.py --config configs/sync_default.py --checkpoint runs/sync_default

About 4 minutes of training on 2 CPU cores (640 steps of 8 pairs) and 25 seconds of
evaluation; with seed 0 (the default) it reproduces the model shipped in
sesyn_jax/models/sync_default (copy runs/sync_default/export there to replace it).
"""

from configs import default


def get_config():
    c = default.get_config()
    c.data.source = "embedded"
    c.data.protocol = "independent"
    c.data.frames = 120
    c.data.max_offset = 30
    c.data.buckets = (128,)
    c.data.render = True
    c.data.render_on = "device"
    c.data.pairs_per_epoch = 256
    c.model.widths = (32, 32, 32, 64, 64, 64)
    c.model.padding = "edge"
    c.model.inner_frames = True
    c.model.normalization = "person"
    c.loss.weights = {"aligned": 1.0}
    c.loss.options = {"aligned": {"similarity": "l2", "scale_by_dim": True, "temperature": 0.1}}
    c.train.epochs = 20
    c.train.batch_size = 8
    c.train.lr = 0.02
    c.train.schedule = "cosine"
    c.train.eval_every = 5
    c.train.checkpoint_every = 5
    c.train.log_every = 8
    c.eval.rule = "diagonal"
    c.eval.max_offset = 30
    return c
