"""MOCAP-SYN, our benchmark from real motion capture, read from the SYN JSON
files the builder writes. The network is the CPU-sized six-block one of the quickstart (30
epochs take about 20 minutes on 2 cores); for the published network (an accelerator run) add
--config.model.widths='(64,64,64,64,128,128,128,128,128)'.

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
    c.data.pairing = "ntu"  # the builder names views ..._C001 / ..._C002
    c.data.buckets = (128,)
    c.loss.weights = {"identity": 1.0, "deviation": 0.5, "interval": 0.035}
    c.model.widths = (32, 32, 32, 64, 64, 64)
    c.train.epochs = 30
    c.train.batch_size = 8
    c.train.lr = 0.02
    c.train.schedule = "cosine"
    c.train.eval_every = 5
    return c
