"""A small two-layer grid router (A* on a 0.1 mm grid) for generate.py.

Obstacles are the copper of other nets, inflated by clearance + half the track width, so a
track centre on a free cell keeps its clearance. Paths are straightened afterwards with a
line-of-sight pass. Good enough for a small, spacious board; KiCad's DRC is the judge.
"""
import heapq
import math

import numpy as np

F, B = 0, 1


class Router:
    def __init__(self, bounds, grid=0.1, edge_clearance=0.35):
        self.x0, self.y0, self.x1, self.y1 = bounds
        self.g = grid
        self.nx = int(round((self.x1 - self.x0) / grid)) + 1
        self.ny = int(round((self.y1 - self.y0) / grid)) + 1
        self.X = self.x0 + np.arange(self.nx) * grid
        self.Y = self.y0 + np.arange(self.ny) * grid
        self.edge = edge_clearance
        self.objs = []          # dicts: layers(set), net, clr, kind, geometry
        self.segments = []      # routed: (net, layer, x1, y1, x2, y2, w)
        self.vias = []          # routed: (net, x, y, d)

    # --- obstacles ---------------------------------------------------------------------------
    def add_rect(self, net, layers, cx, cy, w, h, clr):
        self.objs.append(dict(kind='rect', net=net, layers=set(layers), clr=clr, g=(cx, cy, w / 2, h / 2)))

    def add_circle(self, net, layers, cx, cy, r, clr):
        self.objs.append(dict(kind='circ', net=net, layers=set(layers), clr=clr, g=(cx, cy, r)))

    def add_seg(self, net, layer, x1, y1, x2, y2, w, clr):
        self.objs.append(dict(kind='seg', net=net, layers={layer}, clr=clr, g=(x1, y1, x2, y2, w / 2)))

    def _window(self, xa, ya, xb, yb):
        i0 = max(0, int(math.floor((xa - self.x0) / self.g)))
        i1 = min(self.nx, int(math.ceil((xb - self.x0) / self.g)) + 1)
        j0 = max(0, int(math.floor((ya - self.y0) / self.g)))
        j1 = min(self.ny, int(math.ceil((yb - self.y0) / self.g)) + 1)
        return i0, i1, j0, j1

    def _dist(self, o, i0, i1, j0, j1):
        X = self.X[i0:i1][None, :]
        Y = self.Y[j0:j1][:, None]
        if o['kind'] == 'rect':
            cx, cy, hw, hh = o['g']
            dx = np.maximum(np.abs(X - cx) - hw, 0)
            dy = np.maximum(np.abs(Y - cy) - hh, 0)
            return np.hypot(dx, dy)
        if o['kind'] == 'circ':
            cx, cy, r = o['g']
            return np.maximum(np.hypot(X - cx, Y - cy) - r, 0)
        x1, y1, x2, y2, r = o['g']
        vx, vy = x2 - x1, y2 - y1
        L2 = vx * vx + vy * vy
        if L2 == 0:
            t = 0
        else:
            t = np.clip(((X - x1) * vx + (Y - y1) * vy) / L2, 0, 1)
        return np.maximum(np.hypot(X - (x1 + t * vx), Y - (y1 + t * vy)) - r, 0)

    def _bbox(self, o, infl):
        k = o['kind']
        if k == 'rect':
            cx, cy, hw, hh = o['g']
            return cx - hw - infl, cy - hh - infl, cx + hw + infl, cy + hh + infl
        if k == 'circ':
            cx, cy, r = o['g']
            return cx - r - infl, cy - r - infl, cx + r + infl, cy + r + infl
        x1, y1, x2, y2, r = o['g']
        return min(x1, x2) - r - infl, min(y1, y2) - r - infl, max(x1, x2) + r + infl, max(y1, y2) + r + infl

    def blocked(self, net, layer, radius, clr):
        """Cells where a round object of `radius` (of net `net`, clearance `clr`) would violate."""
        m = np.zeros((self.ny, self.nx), bool)
        for o in self.objs:
            if o['net'] == net or layer not in o['layers']:
                continue
            infl = max(clr, o['clr']) + radius + 0.01
            i0, i1, j0, j1 = self._window(*self._bbox(o, infl))
            if i0 >= i1 or j0 >= j1:
                continue
            m[j0:j1, i0:i1] |= self._dist(o, i0, i1, j0, j1) < infl
        e = self.edge + radius
        ei = int(math.ceil(e / self.g))
        m[:ei, :] = True
        m[-ei:, :] = True
        m[:, :ei] = True
        m[:, -ei:] = True
        return m

    def set_pads(self, pads, r):
        """inpad[j, i]: a via (radius r - margin) centred on this cell would touch a pad."""
        self.inpad = np.zeros((self.ny, self.nx), bool)
        for p in pads:
            o = dict(kind='circ', g=(p['x'], p['y'], p['w'] / 2)) if p['shape'] == 'circle' else \
                dict(kind='rect', g=(p['x'], p['y'], p['w'] / 2, p['h'] / 2))
            i0, i1, j0, j1 = self._window(*self._bbox(o, r))
            if i0 < i1 and j0 < j1:
                self.inpad[j0:j1, i0:i1] |= self._dist(o, i0, i1, j0, j1) < r

    def cell(self, x, y):
        return int(round((x - self.x0) / self.g)), int(round((y - self.y0) / self.g))

    def xy(self, i, j):
        return self.x0 + i * self.g, self.y0 + j * self.g

    # --- search ------------------------------------------------------------------------------
    def astar(self, starts, targets, free, viafree, goal_xy, window, via_cost=25.0, bcost=1.6,
              goal=None):
        """starts/targets: sets of (layer, i, j). free[layer], viafree: bool arrays.
        Returns list of (layer, i, j) from a start to a target, or None."""
        i0, i1, j0, j1 = window
        gx, gy = goal_xy
        gi, gj = (gx - self.x0) / self.g, (gy - self.y0) / self.g
        nx = self.nx
        openh = []
        best = {}
        prev = {}
        for s in starts:
            best[s] = 0.0
            heapq.heappush(openh, (0.0, 0.0, s))
        moves = [(1, 0, 1.0), (-1, 0, 1.0), (0, 1, 1.0), (0, -1, 1.0),
                 (1, 1, 1.4142), (1, -1, 1.4142), (-1, 1, 1.4142), (-1, -1, 1.4142)]
        found = None
        while openh:
            f, g, s = heapq.heappop(openh)
            if g > best.get(s, 1e18):
                continue
            if (goal is not None and s[0] == F and goal[s[2], s[1]]) or (goal is None and s in targets):
                found = s
                break
            L, i, j = s
            lc = bcost if L == B else 1.0
            for di, dj, c in moves:
                ni, nj = i + di, j + dj
                if ni < i0 or ni >= i1 or nj < j0 or nj >= j1:
                    continue
                if not free[L][nj, ni]:
                    continue
                if di and dj and not (free[L][j, ni] and free[L][nj, i]):
                    continue
                t = (L, ni, nj)
                ng = g + c * lc
                if ng < best.get(t, 1e18):
                    best[t] = ng
                    prev[t] = s
                    dx, dy = abs(ni - gi), abs(nj - gj)
                    h = (dx + dy) + (1.4142 - 2) * min(dx, dy)
                    heapq.heappush(openh, (ng + h, ng, t))
            if viafree[j, i]:
                t = (1 - L, i, j)
                ng = g + via_cost
                if free[1 - L][j, i] and ng < best.get(t, 1e18):
                    best[t] = ng
                    prev[t] = s
                    dx, dy = abs(i - gi), abs(j - gj)
                    h = (dx + dy) + (1.4142 - 2) * min(dx, dy)
                    heapq.heappush(openh, (ng + h, ng, t))
        if found is None:
            return None
        path = [found]
        while path[-1] in prev:
            path.append(prev[path[-1]])
        path.reverse()
        return path

    def line_free(self, free, a, b):
        (xa, ya), (xb, yb) = a, b
        n = max(2, int(math.hypot(xb - xa, yb - ya) / (self.g * 0.4)) + 1)
        for k in range(n + 1):
            t = k / n
            i, j = self.cell(xa + (xb - xa) * t, ya + (yb - ya) * t)
            if not free[j, i]:
                return False
        return True

    def smooth(self, pts, free):
        """pts: [(x, y)] on one layer; greedy line-of-sight shortcutting."""
        if len(pts) <= 2:
            return pts
        out = [pts[0]]
        k = 0
        while k < len(pts) - 1:
            far = k + 1
            for m in range(len(pts) - 1, k + 1, -1):
                if self.line_free(free, pts[k], pts[m]):
                    far = m
                    break
            out.append(pts[far])
            k = far
        return out
