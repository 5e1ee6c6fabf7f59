"""NTU-SYN with the paper's hyperparameters (SGD lr 0.005, Nesterov 0.9, weight decay 1e-4,
400 epochs, one pair per step, mu1 = 0.5, mu2 = 0.035, BatchNorm per view as published).

  python train.py --config configs/ntu_syn.py --config.data.root /path/to/NTU-SYN --workdir runs/ntu_syn

data.root holds train/ and test/ folders of SYN JSON files (C001 / C002 views).
"""

from configs import default


def get_config():
    c = default.get_config()
    c.data.source = "syn"
    c.data.pairing = "ntu"
    c.loss.weights = {"identity": 1.0, "deviation": 0.5, "interval": 0.035}
    c.train.epochs = 400
    c.train.batch_size = 1
    c.train.bn_mode = "per_view"
    return c
