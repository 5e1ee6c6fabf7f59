"""CPU-sized loss ablation on the 120-frame MOCAP-SYN built in memory from the embedded clips:
a narrow six-block network, 6 epochs; 5 variants x 3 seeds take about 56 minutes on 2 cores
(docs/ablation.md has the table).

  python -m sesyn_jax.ablate --config configs/ablation_cpu.py --config.data.protocol=paper \
      --variants iden,iden+devi,iden+devi+intv,tcc_cls,tcc_reg_var --seeds 0,1,2 --workdir runs/ablation

(docs/ablation.md's table was made on the 'paper' protocol, the quickstart's default then.)

The same runner at full size (an accelerator): --config configs/mocap_syn.py with data.root set
in that file or a copy of it.
"""

from configs import quickstart


def get_config():
    c = quickstart.get_config()
    c.train.epochs = 6
    c.train.eval_every = 0
    c.train.checkpoint_every = 2
    return c
