"""A layered (Sugiyama-style) layout in pure Python, so that drawing needs no Graphviz binary.

The classic four steps, each kept simple:
1. ranks: longest path from the sources (a net's blobs flow one way);
2. edges spanning several ranks get a dummy node per rank, so they route around nodes;
3. order within ranks: barycenter sweeps, keeping the order with the fewest crossings;
4. coordinates: each node moves towards the mean of its neighbours, then the rank is packed exactly
   (weighted isotonic regression under the minimum gaps, i.e. pool-adjacent-violators).
Everything is computed with ranks running down ("TB") and turned at the end for BT, LR and RL.
A ResNet-152 (about 1,300 nodes and dummies) lays out in well under a second.
"""
from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass

RANK_GAP = 34
NODE_GAP = 18
DUMMY_BREADTH = 6
MARGIN = 24
ORDER_SWEEPS = 6
PLACE_ROUNDS = 6
DUMMY_WEIGHT = 4.0  # long edges stay straight rather than bending towards every neighbour


@dataclass
class Layout:
    width: float
    height: float
    centers: dict  # node id -> (x, y)
    routes: dict  # (from id, to id) -> points from the source's border to the target's, through dummies


class _Dummy:
    __slots__ = ("edge", "index")

    def __init__(self, edge, index):
        self.edge, self.index = edge, index


def _ranks(nodes, edges) -> dict:
    preds = defaultdict(list)
    indegree = {n: 0 for n in nodes}
    succs = defaultdict(list)
    for a, b in edges:
        succs[a].append(b)
        preds[b].append(a)
        indegree[b] += 1
    ready = [n for n in nodes if indegree[n] == 0]
    rank = {}
    while ready:
        node = ready.pop(0)
        rank[node] = max((rank[p] + 1 for p in preds[node]), default=0)
        for s in succs[node]:
            indegree[s] -= 1
            if indegree[s] == 0:
                ready.append(s)
    if len(rank) != len(nodes):
        raise ValueError("the graph has a cycle")
    return rank


def _crossings(upper_pos: dict, lower: list, up: dict) -> int:
    """Edge crossings between two adjacent ranks (inversions of the lower ends, sorted by upper end)."""
    ends = sorted((upper_pos[p], i) for i, node in enumerate(lower) for p in up[node])
    seen, count = [], 0
    for _, lower_index in ends:
        count += len(seen) - bisect_right(seen, lower_index)
        seen.insert(bisect_right(seen, lower_index), lower_index)
    return count


def _total_crossings(ranks, up) -> int:
    total = 0
    for r in range(1, len(ranks)):
        total += _crossings({n: i for i, n in enumerate(ranks[r - 1])}, ranks[r], up)
    return total


def _order(ranks, up, down):
    """Barycenter sweeps; keeps the best order seen."""
    best, best_count = [list(r) for r in ranks], _total_crossings(ranks, up)
    for sweep in range(ORDER_SWEEPS):
        downward = sweep % 2 == 0
        sequence = range(1, len(ranks)) if downward else range(len(ranks) - 2, -1, -1)
        for r in sequence:
            neighbour_rank = ranks[r - 1] if downward else ranks[r + 1]
            position = {n: i for i, n in enumerate(neighbour_rank)}
            links = up if downward else down
            own = {n: i for i, n in enumerate(ranks[r])}

            def barycenter(node):
                linked = [position[m] for m in links[node]]
                return sum(linked) / len(linked) if linked else own[node]
            ranks[r].sort(key=lambda n: (barycenter(n), own[n]))
        count = _total_crossings(ranks, up)
        if count < best_count:
            best, best_count = [list(r) for r in ranks], count
    return best


def _pack(desired, weights, offsets):
    """Positions closest (weighted least squares) to `desired` with x[i+1] - x[i] >= the given gaps."""
    blocks = []  # [weighted sum, weight, count]
    for d, w, o in zip(desired, weights, offsets):
        blocks.append([w * (d - o), w, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, w2, c = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += w2
            blocks[-1][2] += c
    values = [b[0] / b[1] for b in blocks for _ in range(b[2])]
    return [v + o for v, o in zip(values, offsets)]


def _place(ranks, up, down, breadth, is_dummy):
    x = {}
    offsets = []
    for rank in ranks:
        offset, rank_offsets = 0.0, []
        for i, node in enumerate(rank):
            if i:
                offset += (breadth[rank[i - 1]] + breadth[node]) / 2 + NODE_GAP
            rank_offsets.append(offset)
            x[node] = offset
        offsets.append(rank_offsets)
    weights = [[DUMMY_WEIGHT if is_dummy(n) else 1.0 for n in rank] for rank in ranks]

    def settle(r, links_of):
        rank = ranks[r]
        desired = []
        for node in rank:
            linked = [x[m] for m in links_of(node)]
            desired.append(sum(linked) / len(linked) if linked else x[node])
        for node, value in zip(rank, _pack(desired, weights[r], offsets[r])):
            x[node] = value
    for _ in range(PLACE_ROUNDS):
        for r in range(1, len(ranks)):
            settle(r, lambda n: up[n])
        for r in range(len(ranks) - 2, -1, -1):
            settle(r, lambda n: down[n])
    for r in range(len(ranks)):
        settle(r, lambda n: up[n] + down[n])
    return x


def layered_layout(sizes: dict, edges: list, rankdir: str = "TB") -> Layout:
    """Positions for nodes of the given (width, height) and routes for the edges of a DAG."""
    horizontal = rankdir in ("LR", "RL")
    nodes = list(sizes)
    rank = _ranks(nodes, edges)
    breadth = {n: (sizes[n][1] if horizontal else sizes[n][0]) for n in nodes}
    depth = {n: (sizes[n][0] if horizontal else sizes[n][1]) for n in nodes}
    up, down = defaultdict(list), defaultdict(list)
    chains = {}
    for edge in edges:
        a, b = edge
        chain = [a] + [_Dummy(edge, i) for i in range(rank[b] - rank[a] - 1)] + [b]
        for i, dummy in enumerate(chain[1:-1], start=1):
            rank[dummy] = rank[a] + i
            breadth[dummy], depth[dummy] = DUMMY_BREADTH, 0
        for p, q in zip(chain, chain[1:]):
            down[p].append(q)
            up[q].append(p)
        chains[edge] = chain
    ranks = [[] for _ in range(max(rank.values(), default=-1) + 1)]
    for node in nodes + [d for chain in chains.values() for d in chain[1:-1]]:
        ranks[rank[node]].append(node)
    ranks = _order(ranks, up, down)
    u = _place(ranks, up, down, breadth, lambda n: isinstance(n, _Dummy))
    band = [max((depth[n] for n in r), default=0) for r in ranks]
    v_of_rank, v = [], 0.0
    for r, size in enumerate(band):
        v += (band[r - 1] / 2 + RANK_GAP + size / 2) if r else size / 2
        v_of_rank.append(v)
    low = min((u[n] - breadth[n] / 2 for n in u), default=0.0)
    across = max((u[n] + breadth[n] / 2 for n in u), default=0.0) - low
    along = v_of_rank[-1] + band[-1] / 2 if ranks else 0.0

    def point(pu, pv):
        pu, pv = pu - low + MARGIN, pv + MARGIN
        if rankdir in ("BT", "RL"):
            pv = along + 2 * MARGIN - pv
        return (pv, pu) if horizontal else (pu, pv)
    centers = {n: point(u[n], v_of_rank[rank[n]]) for n in nodes}
    routes = {}
    for edge, chain in chains.items():
        a, b = edge
        points = [point(u[a], v_of_rank[rank[a]] + depth[a] / 2)]
        for dummy in chain[1:-1]:
            r = rank[dummy]
            points += [point(u[dummy], v_of_rank[r] - band[r] / 2), point(u[dummy], v_of_rank[r] + band[r] / 2)]
        points.append(point(u[b], v_of_rank[rank[b]] - depth[b] / 2))
        routes[edge] = points
    size = (along + 2 * MARGIN, across + 2 * MARGIN)
    width, height = (size if horizontal else size[::-1])
    return Layout(width, height, centers, routes)
