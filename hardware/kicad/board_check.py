#!/usr/bin/env python3
"""Mechanical and assembly checks of the MEP drawer board file that KiCad's DRC does not make
(run by check.sh; plain Python 3, reads the .kicad_pcb text):

* no via inside or touching an SMD pad (on either side): solder wicks into an open via and the
  joint starves - under the module's 0.4 mm pads it opens;
* the outline (Edge.Cuts) fits in 70 x 28 mm, the original drawer board;
* two M3 holes (3.2 mm) 5 mm from each end and 3 mm above the lower edge, as on the original;
* J1 pin 1 21 mm from the right-hand end and 6 mm above the lower edge (the original's J6);
* each part on the side design.py says, top-side parts no taller than design.TOP_MAX_HEIGHT.

    python3 hardware/kicad/board_check.py [board.kicad_pcb]     exit status 1 on any failure
"""
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from sexpr import parse, unq, find, findall  # noqa: E402
import design  # noqa: E402

OUTLINE = (70.0, 28.0)
HOLE_D = 3.2
TOL = 0.02


def rot(px, py, deg):
    """KiCad rotation (degrees, counter-clockwise on screen, y down)."""
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return px * c + py * s, -px * s + py * c


def pads_of(fp):
    at = find(fp, 'at')
    fx, fy = float(at[1]), float(at[2])
    fr = float(at[3]) if len(at) > 3 else 0.0
    out = []
    for p in findall(fp, 'pad'):
        pat = find(p, 'at')
        px, py = float(pat[1]), float(pat[2])
        pr = float(pat[3]) if len(pat) > 3 else 0.0       # absolute pad angle (includes fr)
        dx, dy = rot(px, py, fr)
        size = find(p, 'size')
        drill = find(p, 'drill')
        layers = [unq(x) for x in find(p, 'layers')[1:]]
        out.append(dict(number=unq(p[1]), kind=p[2], shape=p[3], x=fx + dx, y=fy + dy, a=pr,
                        w=float(size[1]), h=float(size[2]), layers=layers,
                        drill=float(drill[1]) if drill is not None and len(drill) > 1 and drill[1] != 'oval' else None))
    return out


def via_hits_pad(vx, vy, vr, pad):
    """True when a via of radius vr at (vx, vy) overlaps the pad's copper (rectangle, rounded
    rectangle and oval taken as their bounding rectangle: conservative)."""
    lx, ly = rot(vx - pad['x'], vy - pad['y'], -pad['a'])
    if pad['shape'] == 'circle':
        return math.hypot(lx, ly) < pad['w'] / 2 + vr - 1e-6
    dx = max(abs(lx) - pad['w'] / 2, 0.0)
    dy = max(abs(ly) - pad['h'] / 2, 0.0)
    return math.hypot(dx, dy) < vr - 1e-6


def arc_points(start, mid, end, n=16):
    (x1, y1), (x2, y2), (x3, y3) = start, mid, end
    d = 2 * (x1 * (y2 - y3) + x2 * (y3 - y1) + x3 * (y1 - y2))
    if abs(d) < 1e-12:
        return [start, mid, end]
    ux = ((x1 * x1 + y1 * y1) * (y2 - y3) + (x2 * x2 + y2 * y2) * (y3 - y1) + (x3 * x3 + y3 * y3) * (y1 - y2)) / d
    uy = ((x1 * x1 + y1 * y1) * (x3 - x2) + (x2 * x2 + y2 * y2) * (x1 - x3) + (x3 * x3 + y3 * y3) * (x2 - x1)) / d
    r = math.hypot(x1 - ux, y1 - uy)
    a1, a2, a3 = (math.atan2(y - uy, x - ux) for x, y in (start, mid, end))

    def ccw(a, b):
        return (b - a) % (2 * math.pi)
    span = ccw(a1, a3)
    if ccw(a1, a2) > span:          # mid not on the ccw path: go the other way
        span = span - 2 * math.pi
    return [(ux + r * math.cos(a1 + span * k / n), uy + r * math.sin(a1 + span * k / n)) for k in range(n + 1)]


def outline_points(board):
    pts = []
    for g in board:
        if not (isinstance(g, list) and g and g[0] in ('gr_line', 'gr_arc', 'gr_rect', 'gr_circle', 'gr_poly')):
            continue
        layer = find(g, 'layer')
        if layer is None or unq(layer[1]) != 'Edge.Cuts':
            continue
        P = {k: (float(find(g, k)[1]), float(find(g, k)[2])) for k in ('start', 'mid', 'end', 'center')
             if find(g, k) is not None}
        if g[0] == 'gr_arc':
            pts += arc_points(P['start'], P['mid'], P['end'])
        elif g[0] == 'gr_circle':
            r = math.hypot(P['end'][0] - P['center'][0], P['end'][1] - P['center'][1])
            pts += [(P['center'][0] + sx * r, P['center'][1] + sy * r) for sx in (-1, 1) for sy in (-1, 1)]
        elif g[0] == 'gr_poly':
            pts += [(float(p[1]), float(p[2])) for p in find(g, 'pts')[1:] if isinstance(p, list)]
        else:
            pts += [P['start'], P['end']]
    return pts


def main(path):
    board = parse(open(path).read())
    fail, info = [], []
    fps = findall(board, 'footprint')
    byref = {}
    for fp in fps:
        ref = next(unq(p[2]) for p in findall(fp, 'property') if unq(p[1]) == 'Reference')
        byref[ref] = fp

    # --- vias in SMD pads ----------------------------------------------------------------------
    vias = [(float(find(v, 'at')[1]), float(find(v, 'at')[2]), float(find(v, 'size')[1]) / 2)
            for v in findall(board, 'via')]
    smd = [(ref, p) for ref, fp in byref.items() for p in pads_of(fp) if p['kind'] == 'smd']
    bad = []
    for vx, vy, vr in vias:
        for ref, p in smd:
            if via_hits_pad(vx, vy, vr, p):
                bad.append('%s.%s at (%.2f, %.2f)' % (ref, p['number'], vx, vy))
    if bad:
        fail.append('%d via(s) in SMD pads: %s' % (len(bad), ', '.join(bad[:12])))
    info.append('vias: %d, in SMD pads: %d (%d SMD pads)' % (len(vias), len(bad), len(smd)))

    # --- outline ----------------------------------------------------------------------------
    pts = outline_points(board)
    if not pts:
        fail.append('no board outline on Edge.Cuts')
        x0 = y0 = x1 = y1 = 0.0
    else:
        x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
        y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
        w, h = x1 - x0, y1 - y0
        info.append('outline: %.2f x %.2f mm' % (w, h))
        if w > OUTLINE[0] + TOL or h > OUTLINE[1] + TOL:
            fail.append('outline %.2f x %.2f mm is outside %g x %g mm' % (w, h, OUTLINE[0], OUTLINE[1]))

    # --- mounting holes ------------------------------------------------------------------------
    holes = [(p['x'], p['y']) for fp in fps for p in pads_of(fp)
             if p['kind'] == 'np_thru_hole' and p['drill'] and abs(p['drill'] - HOLE_D) < 0.05]
    want = [(x0 + 5.0, y1 - 3.0), (x1 - 5.0, y1 - 3.0)]
    info.append('M3 holes: %d at %s' % (len(holes), ', '.join('(%.2f, %.2f) from the lower left corner'
                                                              % (hx - x0, y1 - hy) for hx, hy in holes)))
    if len(holes) != 2:
        fail.append('%d M3 (3.2 mm) holes, want 2' % len(holes))
    for wx, wy in want:
        if not any(math.hypot(hx - wx, hy - wy) < 0.05 for hx, hy in holes):
            fail.append('no M3 hole 5 mm from the end and 3 mm above the lower edge at (%.2f, %.2f)'
                        % (wx - x0, y1 - wy))

    # --- J1 where the original's J6 is -----------------------------------------------------------
    j1 = byref.get('J1')
    p1 = [p for p in pads_of(j1) if p['number'] == '1'] if j1 else []
    if not p1:
        fail.append('J1 pin 1 not found')
    else:
        dx, dy = x1 - p1[0]['x'], y1 - p1[0]['y']
        info.append('J1 pin 1: %.2f mm from the right-hand end, %.2f mm above the lower edge' % (dx, dy))
        if abs(dx - 21.0) > TOL or abs(dy - 6.0) > TOL:
            fail.append('J1 pin 1 is not 21 mm / 6 mm from the lower right-hand corner')

    # --- sides and heights ----------------------------------------------------------------------
    tall = []
    for part in design.PARTS:
        fp = byref.get(part['ref'])
        if fp is None:
            fail.append('%s missing on the board' % part['ref'])
            continue
        side = 'B' if unq(find(fp, 'layer')[1]) == 'B.Cu' else 'F'
        if side != part.get('side', 'F'):
            fail.append('%s is on the %s side, design.py says %s' % (part['ref'], side, part.get('side', 'F')))
        if side == 'F' and part['ref'] != 'J1' and part['h'] > design.TOP_MAX_HEIGHT + 1e-9:
            tall.append('%s %.2f mm' % (part['ref'], part['h']))
    if tall:
        fail.append('top-side parts above %.2f mm: %s' % (design.TOP_MAX_HEIGHT, ', '.join(tall)))
    top = max(p['h'] for p in design.PARTS if p.get('side') != 'B' and p['ref'] != 'J1')
    back = [p for p in design.PARTS if p.get('side') == 'B']
    info.append('heights: top side max %.2f mm (limit %.2f, J1 as the original); back side max %.2f mm (%s)'
                % (top, design.TOP_MAX_HEIGHT, max(p['h'] for p in back) if back else 0.0,
                   ', '.join(p['ref'] for p in back)))
    for line in info:
        print('  ' + line)
    for f in fail:
        print('  FAIL: ' + f)
    return 1 if fail else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, 'mep-drawer.kicad_pcb')))
