"""MOCAP-SYN, our benchmark from real motion capture (SPEC section 9): the published network and
the paper's recipe (SGD lr 0.005, Nesterov 0.9, weight decay 1e-4, one pair per step, BatchNorm
per view), for 30 epochs.

Build the data once, then train and evaluate:

  python -m sesyn_jax.data.build_mocap_syn --mocap-dir ../shared/data/mocap --out data/mocap_syn_120 --frames 120
  python train.py --config configs/mocap_syn.py --config.data.root data/mocap_syn_120 --workdir runs/mocap_syn
  python evaluate.py --config configs/mocap_syn.py --config.data.root data/mocap_syn_120 --checkpoint runs/mocap_syn

For the 480-frame (CMU-like) variant build with --frames 480 and add
--config.data.buckets='(512,)'.
"""

from configs import default


def get_config():
    c = default.get_config()
    c.data.source = "syn"
    c.data.pairing = "ntu"            # the builder names views ..._C001 / ..._C002
    c.data.buckets = (128,)
    c.loss.weights = {"identity": 1.0, "deviation": 0.5, "interval": 0.035}
    c.train.epochs = 30
    c.train.batch_size = 1
    c.train.lr = 0.005
    c.train.bn_mode = "per_view"
    c.train.log_every = 20
    c.train.eval_every = 5
    c.train.checkpoint_every = 1
    return c
