"""CMU-SYN with the paper's hyperparameters (as ntu_syn, with mu1 = 0.7, mu2 = 0.015).

  python train.py --config configs/cmu_syn.py --config.data.root /path/to/CMU-SYN --workdir runs/cmu_syn

data.root holds train/ and test/ folders of SYN JSON files (C11 / C21 views).
"""

from configs import default


def get_config():
    c = default.get_config()
    c.data.source = "syn"
    c.data.pairing = "cmu"
    c.data.buckets = (128, 256, 512, 1024)
    c.loss.weights = {"identity": 1.0, "deviation": 0.7, "interval": 0.015}
    c.train.epochs = 400
    c.train.batch_size = 1
    c.train.bn_mode = "per_view"
    return c
