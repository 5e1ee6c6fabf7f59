"""sesyn-sync: synchronize your own pose recordings (``sesyn_jax.sync.cli`` has the full
description, which ``sesyn-sync --help`` prints).

  cli          the command line: flags, the run step by step, exit statuses
  recordings   reading, resampling to the model's rate, normalizing, refusing what cannot work
  embedding    frame embeddings in overlapping chunks (memory linear in the length)
  search       one pair: the learned search, the speed correlation, the choice (--method)
  drift        long recordings: the offset and the clock rate of a pair (--no-drift: one
               offset), and the rates of several views
  views        more than two recordings: the robust fit of one offset per recording
  persons      several people (--all-persons): persons matched one to one, offsets fused
  output       the JSON object and the text lines
  plot         --plot: the score of every candidate offset
  synced       --write-synced: the OpenPose folders renumbered to one clock (Pose2Sim's pose-sync)
"""

from sesyn_jax.sync.cli import main
from sesyn_jax.sync.embedding import embed
from sesyn_jax.sync.errors import BadInput, CannotSync
from sesyn_jax.sync.persons import fuse_persons, match_persons
from sesyn_jax.sync.recordings import MIN_FRAMES, MIN_MOTION, check_recording, motion_level
from sesyn_jax.sync.search import (
    AGREE_WITHIN,
    LOW_CONFIDENCE,
    METHODS,
    PairResult,
    Search,
    learned_search,
    match_pair,
    speed_search,
)
from sesyn_jax.sync.views import fit_offsets

__all__ = [
    "AGREE_WITHIN",
    "BadInput",
    "CannotSync",
    "LOW_CONFIDENCE",
    "METHODS",
    "MIN_FRAMES",
    "MIN_MOTION",
    "PairResult",
    "Search",
    "check_recording",
    "embed",
    "fit_offsets",
    "fuse_persons",
    "learned_search",
    "main",
    "match_pair",
    "match_persons",
    "motion_level",
    "speed_search",
]
