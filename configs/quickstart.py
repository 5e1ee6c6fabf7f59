"""Quickstart: MOCAP-SYN (120-frame windows) built in memory from the clips shipped in the
package, a narrower network, sized to train in a few minutes on a laptop CPU.

  python train.py --config configs/quickstart.py --workdir runs/quickstart
  python evaluate.py --config configs/quickstart.py --checkpoint runs/quickstart
"""

from configs import default


def get_config():
    c = default.get_config()
    c.data.source = "embedded"
    c.data.frames = 120
    c.data.buckets = (128,)
    c.model.widths = (32, 32, 32, 64, 64, 64)
    c.loss.weights = {"identity": 1.0, "deviation": 0.5, "interval": 0.035}
    c.train.epochs = 12
    c.train.batch_size = 8
    c.train.lr = 0.02
    c.train.schedule = "cosine"
    c.train.eval_every = 4
    c.train.checkpoint_every = 2
    c.train.log_every = 5
    return c
