"""Skeleton graphs and their partitioned adjacency matrices (ST-GCN style).

The adjacency ``A`` has shape (K, V, V): K partitions of the neighbourhood of each joint,
``A[k, v, w]`` the weight with which joint v feeds joint w in partition k (the model computes
``einsum('...vkc,kvw->...wc')``).

Reproducing the published SeSyn-Net graph exactly needs one quirk: the hop distance between
joints is computed only up to ``max_hop`` and is infinite beyond it, and that *cut* distance is
also what decides, in the ``spatial`` partition, whether a neighbour is closer to the centre
joint than the root is. With max_hop = 1 every joint more than one hop from the nose is
"infinitely far" from it, and two such joints compare as equally far (inf == inf), so most edges
land in the root partition. A textbook breadth-first distance gives a different A[1] and A[2];
``textbook_distance=True`` builds that variant for research, the default is the published one.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# COCO-17 joint names, in COCO order.
COCO_JOINTS = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
_J = {name: i for i, name in enumerate(COCO_JOINTS)}
# the joint that takes each joint's place when the person is mirrored left-right
MIRROR = tuple(
    _J[n.replace("left_", "right_") if n.startswith("left_") else n.replace("right_", "left_")]
    for n in COCO_JOINTS
)


def _pairs(*names: str) -> tuple[tuple[int, int], ...]:
    """'a-b' strings of COCO joint names -> pairs of COCO indices."""
    out = []
    for pair in names:
        a, b = pair.split("-")
        out.append((_J[a], _J[b]))
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class Layout:
    """A skeleton: which COCO-17 joints it keeps, its bones and its centre joint.

    ``joints`` are COCO indices, in the order the model sees them; ``edges`` are pairs of COCO
    indices (both ends must be in ``joints``); ``center`` is a COCO index.
    """

    name: str
    joints: tuple[int, ...]
    edges: tuple[tuple[int, int], ...]
    center: int

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    def local_edges(self) -> list[tuple[int, int]]:
        """Edges in the layout's own 0-based joint numbering."""
        pos = {j: i for i, j in enumerate(self.joints)}
        return [(pos[a], pos[b]) for a, b in self.edges]


_COCO_BONES = _pairs(
    "left_ankle-left_knee",
    "left_knee-left_hip",
    "right_ankle-right_knee",
    "right_knee-right_hip",
    "left_hip-right_hip",
    "left_shoulder-left_hip",
    "right_shoulder-right_hip",
    "left_shoulder-right_shoulder",
    "left_elbow-left_shoulder",
    "right_elbow-right_shoulder",
    "left_wrist-left_elbow",
    "right_wrist-right_elbow",
    "left_eye-right_eye",
    "left_eye-nose",
    "right_eye-nose",
    "left_ear-left_eye",
    "right_ear-right_eye",
    "left_ear-left_shoulder",
    "right_ear-right_shoulder",
)
# The reduced skeletons of the paper's joint ablation: the nose joins both shoulders directly.
_TORSO = (
    "nose-left_shoulder",
    "nose-right_shoulder",
    "left_shoulder-right_shoulder",
    "left_shoulder-left_hip",
    "right_shoulder-right_hip",
    "left_hip-right_hip",
)

LAYOUTS: dict[str, Layout] = {
    "coco": Layout("coco", tuple(range(17)), _COCO_BONES, _J["nose"]),
    "coco13": Layout(
        "coco13",
        (0,) + tuple(range(5, 17)),
        _pairs(
            *_TORSO,
            "left_shoulder-left_elbow",
            "right_shoulder-right_elbow",
            "left_elbow-left_wrist",
            "right_elbow-right_wrist",
            "left_hip-left_knee",
            "right_hip-right_knee",
            "left_knee-left_ankle",
            "right_knee-right_ankle",
        ),
        _J["nose"],
    ),
    "coco9": Layout(
        "coco9",
        (0, 5, 6, 9, 10, 11, 12, 15, 16),
        _pairs(
            *_TORSO,
            "left_shoulder-left_wrist",
            "right_shoulder-right_wrist",
            "left_hip-left_ankle",
            "right_hip-right_ankle",
        ),
        _J["nose"],
    ),
    "coco5": Layout("coco5", (0, 5, 6, 11, 12), _pairs(*_TORSO), _J["nose"]),
}
# The published code calls the reduced layouts '5', '9' and '13'.
_ALIASES = {"5": "coco5", "9": "coco9", "13": "coco13", "coco17": "coco"}

STRATEGIES = ("uniform", "distance", "spatial")


def get_layout(name: str) -> Layout:
    """The skeleton layout called ``name`` (or an alias of it); ValueError lists the names."""
    key = _ALIASES.get(str(name), str(name))
    if key not in LAYOUTS:
        raise ValueError(
            f"unknown skeleton layout {name!r}; expected one of "
            f"{sorted(LAYOUTS) + sorted(_ALIASES)}"
        )
    return LAYOUTS[key]


def hop_distance(num_nodes: int, edges, max_hop: int | None) -> np.ndarray:
    """(V, V) hop distance between joints; inf beyond ``max_hop`` (None: no cut)."""
    link = np.eye(num_nodes, dtype=bool)
    for a, b in edges:
        link[a, b] = link[b, a] = True
    dist = np.full((num_nodes, num_nodes), np.inf)
    reach = np.eye(num_nodes, dtype=bool)
    hops = num_nodes if max_hop is None else max_hop
    for d in range(hops + 1):
        dist[np.isinf(dist) & reach] = d
        reach = (reach.astype(np.int64) @ link.astype(np.int64)) > 0
    return dist


def _column_normalize(adj: np.ndarray) -> np.ndarray:
    """A D^-1 with D the column sums (columns that sum to zero stay zero)."""
    col = adj.sum(axis=0)
    inv = np.where(col > 0, 1.0 / np.where(col > 0, col, 1.0), 0.0)
    return adj * inv[None, :]


def adjacency(
    layout: str | Layout = "coco",
    strategy: str = "spatial",
    max_hop: int = 1,
    dilation: int = 1,
    textbook_distance: bool = False,
) -> np.ndarray:
    """The partitioned adjacency (K, V, V), float64, of a layout and partition strategy.

    ``uniform``: K = 1, the normalized adjacency. ``distance``: one partition per hop count.
    ``spatial``: hop 0 is the root partition; every further hop splits into (root + closer to
    the centre) and (further from the centre), so K = 3 for max_hop = 1.
    """
    lay = layout if isinstance(layout, Layout) else get_layout(layout)
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown partition strategy {strategy!r}; expected one of {STRATEGIES}")
    v = lay.num_joints
    edges = lay.local_edges()
    center = lay.joints.index(lay.center)
    hop = hop_distance(v, edges, max_hop)
    # The published code measures distance to the centre with the cut matrix (see module doc).
    to_center = (hop_distance(v, edges, None) if textbook_distance else hop)[:, center]

    hops = list(range(0, max_hop + 1, dilation))
    norm = _column_normalize(np.isin(hop, hops).astype(np.float64))

    if strategy == "uniform":
        return norm[None]
    if strategy == "distance":
        return np.stack([np.where(hop == h, norm, 0.0) for h in hops])

    # spatial: entry [j, i] is the edge from j to i; compare j's and i's distance to the centre.
    dj = to_center[:, None]
    di = to_center[None, :]
    parts = []
    for h in hops:
        on = hop == h
        root = np.where(on & (dj == di), norm, 0.0)
        closer = np.where(on & (dj > di), norm, 0.0)
        further = np.where(on & ~(dj == di) & ~(dj > di), norm, 0.0)
        if h == 0:
            parts.append(root)
        else:
            parts.append(root + closer)
            parts.append(further)
    return np.stack(parts)
