"""The adjacency against a direct loop-by-loop construction from the published graph's
definition."""

import numpy as np
import pytest

from sesyn_jax import graph

# The published COCO-17 edges, 1-based.
PUBLISHED_EDGES_1B = [
    (16, 14),
    (14, 12),
    (17, 15),
    (15, 13),
    (12, 13),
    (6, 12),
    (7, 13),
    (6, 7),
    (8, 6),
    (9, 7),
    (10, 8),
    (11, 9),
    (2, 3),
    (2, 1),
    (3, 1),
    (4, 2),
    (5, 3),
    (4, 6),
    (5, 7),
]


def reference_adjacency(num, edges, center, strategy, cut=True):
    """Spell out the rules with plain loops: 1-hop adjacency with self links, column
    normalization, and the spatial split by (cut or true) hop distance to the centre."""
    link = np.zeros((num, num))
    for i in range(num):
        link[i, i] = 1
    for a, b in edges:
        link[a, b] = link[b, a] = 1
    # true BFS distance
    dist = np.full((num, num), np.inf)
    for s in range(num):
        dist[s, s] = 0
        frontier = [s]
        while frontier:
            nxt = []
            for u in frontier:
                for w in range(num):
                    if link[u, w] and np.isinf(dist[s, w]):
                        dist[s, w] = dist[s, u] + 1
                        nxt.append(w)
            frontier = nxt
    hop = np.where(dist <= 1, dist, np.inf)
    col = link.sum(0)
    norm = np.zeros((num, num))
    for j in range(num):
        for i in range(num):
            norm[j, i] = link[j, i] / col[i]
    if strategy == "uniform":
        return norm[None]
    if strategy == "distance":
        return np.stack([np.where(hop == 0, norm, 0), np.where(hop == 1, norm, 0)])
    dc = (hop if cut else dist)[:, center]
    root = np.zeros((num, num))
    close = np.zeros((num, num))
    far = np.zeros((num, num))
    for j in range(num):
        for i in range(num):
            if hop[j, i] == 0:
                root[j, i] = norm[j, i]
            elif hop[j, i] == 1:
                if dc[j] == dc[i]:
                    close[j, i] = norm[j, i]  # root part of hop 1 joins the 'closer' partition
                elif dc[j] > dc[i]:
                    close[j, i] = norm[j, i]
                else:
                    far[j, i] = norm[j, i]
    return np.stack([root, close, far])


@pytest.mark.parametrize("strategy", ["uniform", "distance", "spatial"])
def test_coco_matches_spec(strategy):
    edges = [(a - 1, b - 1) for a, b in PUBLISHED_EDGES_1B]
    ref = reference_adjacency(17, edges, 0, strategy)
    np.testing.assert_array_equal(graph.adjacency("coco", strategy), ref)


def test_spatial_shape_and_quirk():
    a = graph.adjacency("coco", "spatial")
    assert a.shape == (3, 17, 17)
    # Columns of the summed partitions are normalized.
    np.testing.assert_allclose(a.sum(0).sum(0), np.ones(17))
    # The cut-distance quirk: joints far from the nose compare as equally far, so the
    # hip -> knee entry (both inf from the nose) is in partition 1 with the root; a true BFS
    # distance (hip 4 hops, knee 5) puts it in partition 2.
    knee, hip = 13, 11
    assert a[1, hip, knee] > 0 and a[2, hip, knee] == 0
    t = graph.adjacency("coco", "spatial", textbook_distance=True)
    assert t[1, hip, knee] == 0 and t[2, hip, knee] > 0
    edges = [(x - 1, y - 1) for x, y in PUBLISHED_EDGES_1B]
    np.testing.assert_array_equal(t, reference_adjacency(17, edges, 0, "spatial", cut=False))
    assert not np.array_equal(a, t)


@pytest.mark.parametrize(
    "name,joints,edges_1b",
    [
        ("5", [0, 5, 6, 11, 12], [(1, 2), (1, 3), (2, 3), (2, 4), (3, 5), (4, 5)]),
        (
            "9",
            [0, 5, 6, 9, 10, 11, 12, 15, 16],
            [(1, 2), (1, 3), (2, 3), (2, 4), (3, 5), (2, 6), (3, 7), (6, 7), (6, 8), (7, 9)],
        ),
        (
            "13",
            [0] + list(range(5, 17)),
            [
                (1, 2),
                (1, 3),
                (2, 3),
                (2, 4),
                (3, 5),
                (4, 6),
                (5, 7),
                (2, 8),
                (3, 9),
                (8, 9),
                (8, 10),
                (9, 11),
                (10, 12),
                (11, 13),
            ],
        ),
    ],
)
def test_reduced_layouts(name, joints, edges_1b):
    lay = graph.get_layout(name)
    assert list(lay.joints) == joints
    edges = [(a - 1, b - 1) for a, b in edges_1b]
    for strategy in graph.STRATEGIES:
        np.testing.assert_array_equal(
            graph.adjacency(name, strategy), reference_adjacency(len(joints), edges, 0, strategy)
        )


def test_bad_names():
    with pytest.raises(ValueError, match="unknown skeleton layout"):
        graph.get_layout("openpose")
    with pytest.raises(ValueError, match="unknown partition strategy"):
        graph.adjacency("coco", "geodesic")
