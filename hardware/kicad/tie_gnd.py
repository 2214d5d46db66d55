"""Run with KiCad's Python (pcbnew): flip the back-side footprints, fill the pours and make sure
every piece of the ground pours is connected (a ground via is added where a piece is cut off by
tracks on both layers), then save.

    /usr/bin/python3 tie_gnd.py board.kicad_pcb [REF ...]      (REFs: footprints to flip)
"""
import sys

import pcbnew

VIA_D, VIA_DRILL = 0.6, 0.3
MARGIN = 0.4          # via radius + clearance to the edge of the copper it lands in (mm)
MM = 1e6


def fragments(board):
    frags = []
    for z in board.Zones():
        if z.GetNetname() != 'GND' or z.GetIsRuleArea():
            continue
        for layer in (pcbnew.F_Cu, pcbnew.B_Cu):
            if z.IsOnLayer(layer):
                ps = z.GetFilledPolysList(layer)
                for i in range(ps.OutlineCount()):
                    frags.append((layer, ps.Outline(i)))
    return frags


def components(board, frags):
    parent = list(range(len(frags)))

    def root(a):
        while parent[a] != a:
            a = parent[a]
        return a
    items = [t for t in board.GetTracks() if isinstance(t, pcbnew.PCB_VIA) and t.GetNetname() == 'GND']
    items += [p for p in board.GetPads() if p.GetNetname() == 'GND' and p.GetAttribute() == pcbnew.PAD_ATTRIB_PTH]
    for it in items:
        hit = [k for k, (_, o) in enumerate(frags) if o.PointInside(it.GetPosition())]
        for k in hit[1:]:
            parent[root(k)] = root(hit[0])
    comps = {}
    for k in range(len(frags)):
        comps.setdefault(root(k), []).append(k)
    return sorted(comps.values(), key=lambda ks: -sum(frags[k][1].Area() for k in ks))


def inside(o, p, margin):
    if not o.PointInside(p):
        return False
    return o.SquaredDistance(p) >= (margin * MM) ** 2


def tie(board, frags, iso, main):
    """A via position inside an isolated fragment and inside a main fragment on the other layer."""
    for k in iso:
        layer, o = frags[k]
        others = [frags[m][1] for m in main if frags[m][0] != layer]
        bb = o.BBox()
        y = bb.GetY()
        while y <= bb.GetBottom():
            x = bb.GetX()
            while x <= bb.GetRight():
                p = pcbnew.VECTOR2I(int(x), int(y))
                if inside(o, p, MARGIN) and any(inside(m, p, MARGIN) for m in others):
                    return p
                x += int(0.1 * MM)
            y += int(0.1 * MM)
    return None


def main():
    path = sys.argv[1]
    board = pcbnew.LoadBoard(path)
    for ref in sys.argv[2:]:
        fp = board.FindFootprintByReference(ref)
        fp.Flip(fp.GetPosition(), pcbnew.FLIP_DIRECTION_LEFT_RIGHT)
    filler = pcbnew.ZONE_FILLER(board)
    for _ in range(10):
        filler.Fill(board.Zones())
        frags = fragments(board)
        comps = components(board, frags)
        if len(comps) <= 1:
            break
        added = 0
        for iso in comps[1:]:
            p = tie(board, frags, iso, comps[0])
            if p is None:
                print('tie_gnd: cannot tie the ground piece at (%.1f, %.1f)'
                      % (frags[iso[0]][1].BBox().GetX() / MM, frags[iso[0]][1].BBox().GetY() / MM))
                continue
            via = pcbnew.PCB_VIA(board)
            via.SetPosition(p)
            via.SetWidth(int(VIA_D * MM))
            via.SetDrill(int(VIA_DRILL * MM))
            via.SetNet(board.FindNet('GND'))
            board.Add(via)
            added += 1
            print('tie_gnd: ground via at (%.2f, %.2f)' % (p.x / MM, p.y / MM))
        if not added:
            break
    pcbnew.SaveBoard(path, board)


if __name__ == '__main__':
    main()
