"""Which pieces of the shipped synchronization recipe (configs/sync_default.py) help: five
recipes x 3 seeds, 10 epochs each (half the shipped model's training), on the 'independent'
MOCAP-SYN-120 test pairs with the diagonal offset search (|offset| <= 30). About an hour on 2 CPU
cores (66 minutes measured while other jobs shared them); docs/ablation_sync.md has the table.

  python -m sesyn_jax.ablate --config configs/ablation_sync.py --seeds 0,1,2 \
      --variants cycle,cycle+render+person,aligned+person,aligned+render,sync_default \
      --workdir runs/ablation_sync

  cycle                 the published losses (identity, deviation, interval), the fixed cameras
                        of the MOCAP-SYN training pairs cropped anew every epoch, published
                        normalization;
  cycle+render+person   the same losses on freshly rendered pairs, 'person' normalization;
  aligned+person        the cross-view contrastive loss on the fixed cameras, 'person';
  aligned+render        the contrastive loss on rendered pairs, 'published' normalization;
  sync_default          the contrastive loss, rendered pairs, 'person' (the shipped recipe).
All use inner frames (losses and search away from the sequence ends) and edge padding.
"""

from configs import sync_default

CYCLE = {"identity": 1.0, "deviation": 0.5, "interval": 0.035}
RECIPES = {
    "cycle": {
        "loss.weights": CYCLE,
        "loss.options": {},
        "data.render": False,
        "model.normalization": "published",
    },
    "cycle+render+person": {"loss.weights": CYCLE, "loss.options": {}},
    "aligned+person": {"data.render": False},
    "aligned+render": {"model.normalization": "published"},
    "sync_default": {},
}


def get_config():
    c = sync_default.get_config()
    c.data.render_on = "host"  # the table was measured with the numpy renderer
    c.train.epochs = 10
    c.train.eval_every = 0
    c.train.checkpoint_every = 5
    return c
