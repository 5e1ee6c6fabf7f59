"""Defaults shared by every setup; not run on its own (the other configs start from it).

Fields:
  data.source   'syn' (a SYN JSON dataset: data.root/train and data.root/test, or data.train_dir
                and data.test_dir) or 'embedded' (MOCAP-SYN built in memory from the clips
                shipped in the package; data.frames sets the window length).
  data.protocol embedded source: 'independent' (each view's start and end cut independently,
                so lengths and ends say nothing about the offset; training crops anew every
                epoch) or 'paper' (only the starts cut, as NTU-SYN: both views end together
                and the offset equals the difference of the lengths).
  data.render   embedded source, 'independent' protocol: train on pairs rendered anew from the
                training clips' 3D motion for every pair of every epoch: new cameras (image
                sizes, focal lengths, distances, heights), time-stretch, mirroring, noise,
                missing joints and undetected frames, and, when turned on, the errors real
                detectors make (left/right swaps, jumps to another person, long gaps, jitter
                bursts, occluded joints; all off by default, render.DETECTOR_ERRORS holds
                rates that were tried) as data.augment draws them (sesyn_jax.data.render.Augment),
                data.pairs_per_epoch pairs per epoch.
  data.render_on  with data.render: 'host' (numpy, one pair at a time, in a background
                thread; reproduces the shipped model) or 'device' (one jitted JAX function of
                the step's key on the devices, sesyn_jax.data.render_jax: the same
                distributions, other draws).
  data.prefetch batches built and put on the devices ahead of the step, in a background
                thread (host batches; 0: none).
  model.padding temporal padding of the convolutions: 'zero' (published), 'edge' or 'reflect'.
  model.normalization  input normalization: 'published' (x / width - 0.5, y / height - 0.5)
                or 'person' (centred on the person's box and divided by its size, so image
                size, aspect and distance do not matter). Saved with the export.
  model.inner_frames  train and search offsets only on the frames whose temporal receptive
                field lies inside their sequence (len(widths) * (kernel_size - 1) / 2 frames
                from both ends): those cannot tell where a sequence ends, so the losses cannot
                be lowered by matching positions counted from an end. Saved with the export.
  eval.rule     offset search: 'median' (published: median of per-frame best matches) or
                'diagonal' (best mean similarity of the frames an offset aligns).
  loss.weights  term name -> weight (sesyn_jax.losses.LOSS_TERMS); loss.options term -> kwargs.
  train.tensorboard  also write metrics.jsonl's scalars as TensorBoard event files in
                workdir/tensorboard (needs the extra: pip install 'sesyn-jax[tensorboard]').
  train.profile_steps  (first, last): a jax.profiler trace of those steps (counted from 1) in
                workdir/profile; (0, 0): none.
  train.bn_mode 'joint' (BatchNorm statistics over the real frames of the whole batch) or
                'per_view' (each view normalized on its own, as the published code).
"""

import dataclasses

import ml_collections

from sesyn_jax.data import render


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.source = "syn"
    c.data.root = ""
    c.data.train_dir = ""
    c.data.test_dir = ""
    c.data.pairing = "auto"  # 'auto', 'ntu' (C001/C002) or 'cmu' (C11/C21)
    c.data.frames = 120  # embedded source: window length
    c.data.camera_pairs = 2  # embedded source: camera pairs per window
    c.data.seed = 0  # embedded source: cameras, noise and offsets (fixed across
    # training seeds, so that seeds see the same pairs)
    c.data.protocol = "independent"  # embedded source: 'independent' or 'paper'
    c.data.max_offset = 30  # embedded source: offsets drawn from [-max, max]
    c.data.render = False  # embedded source: train on freshly rendered pairs
    c.data.pairs_per_epoch = 256  # with data.render
    c.data.render_on = "host"  # with data.render: 'host' (numpy) or 'device' (JAX)
    c.data.augment = ml_collections.ConfigDict(dataclasses.asdict(render.Augment()))
    c.data.buckets = (64, 128, 256, 512)
    c.data.fps = 30.0
    c.data.cache = True
    c.data.prefetch = 2

    c.model = ml_collections.ConfigDict()
    c.model.layout = "coco"
    c.model.strategy = "spatial"
    c.model.widths = (64, 64, 64, 64, 128, 128, 128, 128, 128)
    c.model.kernel_size = 9
    c.model.padding = "zero"  # 'zero' (published), 'edge' or 'reflect'
    c.model.normalization = "published"  # 'published' or 'person'
    c.model.inner_frames = False  # loss and offset search only on frames whose temporal
    # receptive field lies inside the sequence
    c.model.dtype = "float32"  # 'bfloat16' on accelerators: bf16 compute, f32 params/loss;
    # 'float64' (with JAX_ENABLE_X64=1) for numerics checks
    c.model.matmul_precision = "default"  # of the convolutions: 'default' (the backend's: one
    # bf16 pass on TPU, TF32 on recent GPUs), 'high' or 'highest'; the losses always use 'highest'

    c.loss = ml_collections.ConfigDict()
    c.loss.weights = ml_collections.ConfigDict(
        {"identity": 1.0, "deviation": 0.5, "interval": 0.035}
    )
    c.loss.options = ml_collections.ConfigDict({"interval": {"tau": 1}})

    c.train = ml_collections.ConfigDict()
    c.train.epochs = 400
    c.train.batch_size = 1
    c.train.lr = 0.005
    c.train.momentum = 0.9
    c.train.nesterov = True
    c.train.weight_decay = 1e-4
    c.train.schedule = "constant"  # 'constant', 'cosine' or 'warmup_cosine'
    c.train.warmup_epochs = 0
    c.train.bn_mode = "joint"
    c.train.log_every = 10  # steps
    c.train.eval_every = 10  # epochs (0: only at the end)
    c.train.checkpoint_every = 1  # epochs
    c.train.keep = 3  # latest checkpoints kept (plus the best by val frame error)
    c.train.tensorboard = False  # event files in workdir/tensorboard
    c.train.profile_steps = (0, 0)  # (first, last) step of a jax.profiler trace; (0, 0): none

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 16
    c.eval.rule = "median"  # 'median' (published) or 'diagonal'
    c.eval.max_offset = 0  # frames; 0: every offset with enough overlap
    c.eval.min_overlap = 0.5  # frames (>= 1) or a fraction of the shorter sequence

    c.mesh = ml_collections.ConfigDict()
    c.mesh.num_processes = 1  # > 1: jax.distributed.initialize with the fields below
    c.mesh.coordinator_address = ""
    c.mesh.process_id = -1
    return c
