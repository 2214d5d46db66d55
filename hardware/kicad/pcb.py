"""Board generation for generate.py: footprints, routing, pours, zone fill."""
import math
import os
import subprocess
import sys

from sexpr import parse, dump, q, unq, num, find, findall
import design
from router import Router, F, B

HERE = os.path.dirname(os.path.abspath(__file__))
NAME = 'mep-drawer'
FPDIR = os.environ.get('KICAD9_FOOTPRINT_DIR', '/usr/share/kicad/footprints')
LAYER = {F: '"F.Cu"', B: '"B.Cu"'}
TRACK = {'sig': 0.25, 'pwr': 0.5}
CLR = {'sig': 0.15, 'pwr': 0.2}
VIA_D, VIA_DRILL = 0.6, 0.3


def uid(*parts):
    import uuid
    return str(uuid.uuid5(uuid.NAMESPACE_URL, 'mep-drawer/pcb/' + '/'.join(str(p) for p in parts)))


def U(*parts):
    return ['uuid', q(uid(*parts))]


def netclass(name):
    base = name.lstrip('/')
    return 'pwr' if base in design.POWER_NETS else 'sig'


def load_fp(lib_id):
    lib, name = lib_id.split(':')
    if lib == 'MEP':
        path = os.path.join(HERE, 'lib', 'MEP.pretty', name + '.kicad_mod')
    else:
        path = os.path.join(FPDIR, lib + '.pretty', name + '.kicad_mod')
    with open(path) as f:
        return parse(f.read())


def rot(px, py, deg):
    a = math.radians(deg)
    c, s = round(math.cos(a), 9), round(math.sin(a), 9)
    return px * c + py * s, -px * s + py * c


def build_footprint(part, pads_net, netids, stamps):
    ref = part['ref']
    x, y, r = part['pos']
    back = part.get('side') == 'B'
    mod = load_fp(part['fp'])
    node = ['footprint', q(part['fp']), ['layer', q('F.Cu')], U(ref), ['at', num(x), num(y)] + ([num(r)] if r else [])]
    geo = []
    skip = {'version', 'generator', 'generator_version', 'layer'}
    for ch in mod[2:]:
        if not isinstance(ch, list) or ch[0] in skip:
            continue
        ch = [c for c in ch]
        if ch[0] == 'property':
            key = unq(ch[1])
            if key == 'Reference':
                ch[2] = q(ref)
                ch = _small_text(ch)
                at = find(ch, 'at')
                tx, ty = rot(float(at[1]), float(at[2]), r)
                bx0, by0, bx1, by1 = design.BOARD
                if y + ty < by0 + 1.0 or y + ty > by1 - 1.0:
                    # keep the reference on the board: put it on the other side of the part
                    ch = [['at', at[1], num(-float(at[2]))] + at[3:] if (isinstance(c, list) and c[0] == 'at') else c
                          for c in ch]
            elif key == 'Value':
                ch[2] = q(part['value'])
        if ch[0] == 'pad':
            number = unq(ch[1])
            at = find(ch, 'at')
            size = find(ch, 'size')
            px, py = float(at[1]), float(at[2])
            pa = float(at[3]) if len(at) > 3 else 0.0
            tot = (pa + r) % 360
            newat = ['at', at[1], at[2]] + ([num(tot)] if tot else [])
            ch = [newat if (isinstance(c, list) and c[0] == 'at') else c for c in ch]
            net = pads_net.get((ref, number)) if number else None
            if net is not None:
                ch.append(['net', str(netids[net]), q(net)])
            bx, by = rot(px, py, r)
            w, h = float(size[1]), float(size[2])
            if round(tot) % 180 == 90:
                w, h = h, w
            layers = [unq(l) for l in find(ch, 'layers')[1:]]
            cu = set()
            for l in layers:
                if l in ('F.Cu', '*.Cu'):
                    cu.add(F)
                if l in ('B.Cu', '*.Cu'):
                    cu.add(B)
            if back:
                # the footprint is flipped left-right about its position (pcbnew does it in
                # fill_zones): mirrored offset, copper on the other side
                bx = -bx
                cu = {B if c == F else F for c in cu}
            drill = find(ch, 'drill')
            geo.append(dict(ref=ref, number=number, net=net, x=x + bx, y=y + by, w=w, h=h, layers=cu,
                            shape=ch[3], kind=ch[2], drill=drill))
        node.append(ch)
    have = {unq(ch[1]) for ch in node if isinstance(ch, list) and ch[0] == 'property'}
    for key in ('Datasheet', 'Description'):
        if key not in have:
            node.append(['property', q(key), '""', ['at', '0', '0', '0'], ['layer', q('F.Fab')], ['hide', 'yes'],
                         U(ref, 'prop', key),
                         ['effects', ['font', ['size', '1.27', '1.27'], ['thickness', '0.15']]]])
    for k, ch in enumerate(node):
        if isinstance(ch, list) and ch[0] in ('property', 'fp_line', 'fp_arc', 'fp_circle', 'fp_rect', 'fp_poly',
                                              'fp_text', 'pad', 'zone') and find(ch, 'uuid') is None:
            ch.append(U(ref, 'item', k))     # stable UUIDs: regenerating gives small diffs
    node.insert(5, ['path', q('/' + stamps[ref])])
    node.insert(6, ['sheetname', q('/')])
    node.insert(7, ['sheetfile', q(NAME + '.kicad_sch')])
    if not part.get('bom', True):
        attr = find(node, 'attr')
        if attr is not None and 'exclude_from_bom' not in attr:
            attr.append('exclude_from_bom')
    return node, geo


def _fp_silk_and_courtyard(node):
    """Board-coordinate boxes of a footprint's silkscreen strokes and its courtyard box."""
    at = find(node, 'at')
    x, y = float(at[1]), float(at[2])
    r = float(at[3]) if len(at) > 3 else 0.0
    silk, crt = [], []
    for ch in node:
        if not (isinstance(ch, list) and ch[0] in ('fp_line', 'fp_rect', 'fp_poly', 'fp_circle', 'fp_arc')):
            continue
        layer = unq(find(ch, 'layer')[1])
        pts = []
        for key in ('start', 'end', 'mid', 'center'):
            p = find(ch, key)
            if p:
                pts.append((float(p[1]), float(p[2])))
        poly = find(ch, 'pts')
        if poly:
            pts += [(float(p[1]), float(p[2])) for p in poly if isinstance(p, list)]
        if ch[0] == 'fp_circle':
            c, e = find(ch, 'center'), find(ch, 'end')
            rad = math.hypot(float(e[1]) - float(c[1]), float(e[2]) - float(c[2]))
            pts = [(float(c[1]) - rad, float(c[2]) - rad), (float(c[1]) + rad, float(c[2]) + rad)]
        pts = [rot(px, py, r) for px, py in pts]
        pts = [(x + px, y + py) for px, py in pts]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        box = (min(xs), min(ys), max(xs), max(ys))
        if layer == 'F.SilkS':
            if ch[0] in ('fp_line',) or len(pts) == 2 and ch[0] != 'fp_rect':
                silk.append(box)
            else:   # rectangles/polygons: their four sides
                x0, y0, x1, y1 = box
                silk += [(x0, y0, x1, y0), (x0, y1, x1, y1), (x0, y0, x0, y1), (x1, y0, x1, y1)]
        elif layer == 'F.CrtYd':
            crt.append(box)
    if crt:
        cb = (min(b[0] for b in crt), min(b[1] for b in crt), max(b[2] for b in crt), max(b[3] for b in crt))
    else:
        cb = (x - 1, y - 1, x + 1, y + 1)
    return silk, cb


def place_references(fps, allpads):
    """Put each silkscreen reference where it overlaps no pad, no other silkscreen and stays
    on the board (first free spot of: above, below, right, left, then further out)."""
    bx0, by0, bx1, by1 = design.BOARD
    pads = [(p['x'] - p['w'] / 2, p['y'] - p['h'] / 2, p['x'] + p['w'] / 2, p['y'] + p['h'] / 2) for p in allpads]
    info = [_fp_silk_and_courtyard(n) for n in fps]
    silk = [b for s, _ in info for b in s]
    texts = []

    def hit(a, b, m):
        return not (a[2] + m <= b[0] or b[2] + m <= a[0] or a[3] + m <= b[1] or b[3] + m <= a[1])

    for node, (_, cb) in zip(fps, info):
        at = find(node, 'at')
        x, y = float(at[1]), float(at[2])
        r = float(at[3]) if len(at) > 3 else 0.0
        prop = next(ch for ch in node if isinstance(ch, list) and ch[0] == 'property' and unq(ch[1]) == 'Reference')
        ref = unq(prop[2])
        if ref.startswith('TP') or ref == 'U1':
            size = 0.8
        else:
            size = 0.8
        w, h = len(ref) * size * 0.72 + 0.15, size + 0.15
        cx, cy = (cb[0] + cb[2]) / 2, (cb[1] + cb[3]) / 2
        hw, hh = (cb[2] - cb[0]) / 2, (cb[3] - cb[1]) / 2
        cands = []
        for extra in (0.0, 0.6, 1.2):
            cands += [(cx, cb[1] - h / 2 - 0.05 - extra), (cx, cb[3] + h / 2 + 0.05 + extra),
                      (cb[2] + w / 2 + 0.05 + extra, cy), (cb[0] - w / 2 - 0.05 - extra, cy)]
            for sx in (-1, 1):
                cands += [(cx + sx * (hw * 0.6 + extra), cb[1] - h / 2 - 0.05),
                          (cx + sx * (hw * 0.6 + extra), cb[3] + h / 2 + 0.05)]
        best = None
        for (tx, ty) in cands:
            box = (tx - w / 2, ty - h / 2, tx + w / 2, ty + h / 2)
            if box[0] < bx0 + 0.3 or box[2] > bx1 - 0.3 or box[1] < by0 + 0.3 or box[3] > by1 - 0.3:
                continue
            n = sum(hit(box, p, 0.1) for p in pads) * 3 + sum(hit(box, s, 0.05) for s in silk) \
                + sum(hit(box, t, 0.1) for t in texts) * 3
            if best is None or n < best[0]:
                best = (n, tx, ty, box)
            if n == 0:
                break
        if best is None:
            continue
        _, tx, ty, box = best
        texts.append(box)
        # footprint-local position of the text (inverse rotation)
        lx, ly = rot(tx - x, ty - y, -r)
        for k, c in enumerate(prop):
            if isinstance(c, list) and c[0] == 'at':
                prop[k] = ['at', num(lx), num(ly)]   # text angle 0: always horizontal


def _small_text(prop):
    out = []
    for c in prop:
        if isinstance(c, list) and c[0] == 'effects':
            c = ['effects', ['font', ['size', '0.8', '0.8'], ['thickness', '0.12']]]
        out.append(c)
    return out


def write_board(pads_net, stamps, pro):
    nets = sorted(set(pads_net.values()))
    netids = {n: i + 1 for i, n in enumerate(nets)}
    fps, allpads = [], []
    for part in design.PARTS:
        node, geo = build_footprint(part, pads_net, netids, stamps)
        fps.append(node)
        allpads += geo
    place_references(fps, allpads)

    bx0, by0, bx1, by1 = design.BOARD
    R = Router(design.BOARD)
    for p in allpads:
        cls = netclass(p['net']) if p['net'] else 'sig'
        if p['kind'] == 'np_thru_hole':
            if p['ref'].startswith('H'):      # mounting hole: nothing under the screw head
                R.add_circle('#hole', {F, B}, p['x'], p['y'], design.HOLE_KEEPOUT, 0.0)
            else:
                R.add_circle('#hole', {F, B}, p['x'], p['y'], p['w'] / 2, 0.25)
            continue
        if p['shape'] == 'circle':
            R.add_circle(p['net'], p['layers'], p['x'], p['y'], p['w'] / 2, CLR[cls])
        else:
            R.add_rect(p['net'], p['layers'], p['x'], p['y'], p['w'], p['h'], CLR[cls])
    for (kx0, ky0, kx1, ky1) in design.ANTENNA_KEEPOUTS:
        R.add_rect('#keepout', {F, B}, (kx0 + kx1) / 2, (ky0 + ky1) / 2, kx1 - kx0, ky1 - ky0, 0.0)
    # the module's underside inside its pad ring stays ground on the top layer (no signal tracks)
    ux, uy, _ = design.ESP_AT
    R.add_rect('GND', {F}, ux, uy, 12.6, 12.6, 0.0)
    nx0, ny0, nx1, ny1 = design.NOTCH
    R.add_rect('#edge', {F, B}, (nx0 + nx1) / 2, (ny0 + ny1) / 2 + 1, nx1 - nx0, ny1 - ny0 + 2, R.edge)
    # no via anywhere inside a pad (any net, any side): solder would wick into it
    R.set_pads(allpads, VIA_D / 2 + 0.05)

    usb_fanout(R, part_pos('J2'))
    failed = route_all(R, allpads)

    items = []
    for (net, layer, x1, y1, x2, y2, w) in R.segments:
        items.append(['segment', ['start', num(x1), num(y1)], ['end', num(x2), num(y2)], ['width', num(w)],
                      ['layer', LAYER[layer]], ['net', str(netids[net])], U('seg', net, layer, x1, y1, x2, y2)])
    for (net, x, y, d) in R.vias:
        items.append(['via', ['at', num(x), num(y)], ['size', num(d)], ['drill', num(VIA_DRILL)],
                      ['layers', '"F.Cu"', '"B.Cu"'], ['net', str(netids[net])], U('via', net, x, y)])
    # outline with 1 mm corner radius
    rr = 1.0
    edge = []

    def gl(x1, y1, x2, y2):
        edge.append(['gr_line', ['start', num(x1), num(y1)], ['end', num(x2), num(y2)],
                     ['stroke', ['width', '0.1'], ['type', 'default']], ['layer', '"Edge.Cuts"'], U('edge', x1, y1)])

    def ga(sx, sy, mx, my, ex, ey):
        edge.append(['gr_arc', ['start', num(sx), num(sy)], ['mid', num(mx), num(my)], ['end', num(ex), num(ey)],
                     ['stroke', ['width', '0.1'], ['type', 'default']], ['layer', '"Edge.Cuts"'], U('arc', sx, sy)])
    k = rr * (1 - math.sqrt(0.5))
    nx0, ny0, nx1, ny1 = design.NOTCH
    gl(bx0 + rr, by0, bx1 - rr, by0)
    ga(bx1 - rr, by0, bx1 - k, by0 + k, bx1, by0 + rr)
    gl(bx1, by0 + rr, bx1, by1 - rr)
    ga(bx1, by1 - rr, bx1 - k, by1 - k, bx1 - rr, by1)
    # lower edge with the cut-out under the antenna (square inner corners, as the original)
    gl(bx1 - rr, by1, nx1, by1)
    gl(nx1, by1, nx1, ny0)
    gl(nx1, ny0, nx0, ny0)
    gl(nx0, ny0, nx0, by1)
    gl(nx0, by1, bx0 + rr, by1)
    ga(bx0 + rr, by1, bx0 + k, by1 - k, bx0, by1 - rr)
    gl(bx0, by1 - rr, bx0, by0 + rr)
    ga(bx0, by0 + rr, bx0 + k, by0 + k, bx0 + rr, by0)

    # the meter's MEP socket slides onto J1's right-angle pins from the top edge: label the lane
    texts = [('MEP', 139.5, 100.2, 'F.SilkS', False)]
    silk = []
    for t, x, y, layer, mirror in texts:
        silk.append(['gr_text', q(t), ['at', num(x), num(y), '0'], ['layer', q(layer)], U('txt', t),
                     ['effects', ['font', ['size', '0.8', '0.8'], ['thickness', '0.12']]]])
    back = [
        ('MEP drawer module rev C (ESP32-S3) - mep-firmware', 124.0, 111.4),
        ('J1: 1 GND  2 RXD in  3 ENABLE  4 +24V  5 TXD out  6 NC', 124.0, 113.0),
        ('download mode: hold BOOT, tap RESET', 124.0, 114.6),
    ]
    for t, x, y in back:
        silk.append(['gr_text', q(t), ['at', num(x), num(y), '0'], ['layer', q('B.SilkS')], U('btxt', t),
                     ['effects', ['font', ['size', '0.8', '0.8'], ['thickness', '0.12']], ['justify', 'mirror']]])

    zones = []
    outline = [(bx0, by0), (bx1, by0), (bx1, by1), (bx0, by1)]
    for layer in ('F.Cu', 'B.Cu'):
        zones.append(['zone', ['net', str(netids['GND'])], ['net_name', q('GND')], ['layer', q(layer)],
                      U('zone', layer), ['hatch', 'edge', '0.5'], ['priority', '0'],
                      ['connect_pads', 'yes', ['clearance', '0.2']], ['min_thickness', '0.2'],
                      ['filled_areas_thickness', 'no'],
                      ['fill', 'yes', ['thermal_gap', '0.3'], ['thermal_bridge_width', '0.3'],
                       ['island_removal_mode', '0']],
                      ['polygon', ['pts'] + [['xy', num(a), num(b)] for a, b in outline]]])
    for n, (kx0, ky0, kx1, ky1) in enumerate(design.ANTENNA_KEEPOUTS):
        ko = [(kx0, ky0), (kx1, ky0), (kx1, ky1), (kx0, ky1)]
        zones.append(['zone', ['net', '0'], ['net_name', '""'], ['layers', '"F.Cu"', '"B.Cu"'], U('keepout', n),
                      ['name', q('antenna keep-out')], ['hatch', 'edge', '0.5'], ['connect_pads', ['clearance', '0']],
                      ['min_thickness', '0.25'], ['filled_areas_thickness', 'no'],
                      ['keepout', ['tracks', 'not_allowed'], ['vias', 'not_allowed'], ['pads', 'not_allowed'],
                       ['copperpour', 'not_allowed'], ['footprints', 'allowed']],
                      ['fill', ['thermal_gap', '0.5'], ['thermal_bridge_width', '0.5']],
                      ['polygon', ['pts'] + [['xy', num(a), num(b)] for a, b in ko]]])

    board = ['kicad_pcb', ['version', '20241229'], ['generator', '"pcbnew"'], ['generator_version', '"9.0"'],
             ['general', ['thickness', '1.6'], ['legacy_teardrops', 'no']], ['paper', '"A4"'],
             ['title_block', ['title', q('MEP drawer module (ESP32-S3)')], ['date', q('2026-12-07')],
              ['rev', q('C')], ['company', q('mep-firmware project')]],
             LAYERS, ['setup', ['pad_to_mask_clearance', '0'], ['allow_soldermask_bridges_in_footprints', 'no'],
                      ['tenting', 'front', 'back'], ['aux_axis_origin', num(bx0), num(by1)]],
             ['net', '0', '""']] + [['net', str(netids[n]), q(n)] for n in nets] + fps + edge + silk + fit_drawing(fps) + items + zones + [
        ['embedded_fonts', 'no']]
    path = os.path.join(HERE, NAME + '.kicad_pcb')
    with open(path, 'w') as f:
        f.write(dump(board) + '\n')
    fill_zones(path, sorted(p['ref'] for p in design.PARTS if p.get('side') == 'B'))
    if failed:
        print('UNROUTED:', failed)
    return failed


def fill_zones(path, back=()):
    """Flip the back-side footprints, fill the pours and tie cut-off ground pieces (tie_gnd.py,
    run with KiCad's Python for the pcbnew module), then save."""
    py = os.environ.get('KICAD_PYTHON', '/usr/bin/python3')
    subprocess.run([py, os.path.join(HERE, 'tie_gnd.py'), path] + list(back), check=True)


def fit_drawing(fps):
    """The 1:1 fit-test drawing on User.Drawings: every part's courtyard with its reference and
    height (back-side parts dashed), the mounting holes with the screw-head circle, J1's pins, a
    10 mm scale bar and a title. check.sh prints it with the outline as a PDF."""
    parts = {p['ref']: p for p in design.PARTS}
    out = []
    lay = q('Dwgs.User')

    def text(t, x, y, size=0.6, key=None):
        out.append(['gr_text', q(t), ['at', num(x), num(y), '0'], ['layer', lay], U('fit', 'txt', key or t, x, y),
                    ['effects', ['font', ['size', num(size), num(size)], ['thickness', num(size * 0.15)]]]])

    def rect(x0, y0, x1, y1, dash, key):
        out.append(['gr_rect', ['start', num(x0), num(y0)], ['end', num(x1), num(y1)],
                    ['stroke', ['width', '0.1'], ['type', 'dash' if dash else 'solid']], ['fill', 'no'],
                    ['layer', lay], U('fit', 'rect', key)])

    for node in fps:
        ref = unq(next(ch for ch in node if isinstance(ch, list) and ch[0] == 'property'
                       and unq(ch[1]) == 'Reference')[2])
        p = parts[ref]
        if ref.startswith('TP'):
            continue
        _, (x0, y0, x1, y1) = _fp_silk_and_courtyard(node)
        back = p.get('side') == 'B'
        if back:
            fx = p['pos'][0]
            x0, x1 = 2 * fx - x1, 2 * fx - x0
        if ref.startswith('H'):
            cx, cy = p['pos'][0], p['pos'][1]
            out.append(['gr_circle', ['center', num(cx), num(cy)], ['end', num(cx + 1.6), num(cy)],
                        ['stroke', ['width', '0.1'], ['type', 'solid']], ['fill', 'no'], ['layer', lay],
                        U('fit', 'hole', ref)])
            out.append(['gr_circle', ['center', num(cx), num(cy)], ['end', num(cx + 2.75), num(cy)],
                        ['stroke', ['width', '0.1'], ['type', 'dash']], ['fill', 'no'], ['layer', lay],
                        U('fit', 'head', ref)])
            text('M3', cx, cy, 0.8, key=ref)
            continue
        rect(x0, y0, x1, y1, back, ref)
        if ref == 'J1':       # its pins, where the meter's socket goes
            for pad in findall(node, 'pad'):
                at = find(pad, 'at')
                fx, fy, fr = p['pos']
                dx, dy = rot(float(at[1]), float(at[2]), fr)
                out.append(['gr_circle', ['center', num(fx + dx), num(fy + dy)],
                            ['end', num(fx + dx + 0.8), num(fy + dy)],
                            ['stroke', ['width', '0.1'], ['type', 'solid']], ['fill', 'no'], ['layer', lay],
                            U('fit', 'j1', unq(pad[1]))])
                if unq(pad[1]) == '1':
                    text('1', fx + dx - 1.4, fy + dy, 0.8, key='j1pin1')
        label = '%s %.1f%s' % (ref, p['h'], ' B' if back else '')
        text(label, (x0 + x1) / 2, (y0 + y1) / 2, 0.5 if (x1 - x0) < 3 else 0.6, key=ref)
    bx0, by0, bx1, by1 = design.BOARD
    text('MEP drawer PCB rev C, fit test: print at 100 % (actual size), cut along the outline', bx0 + 35, by0 - 6, 1.0)
    text('boxes: part outlines, height in mm above the board; B / dashed = on the back; M3 holes with head', bx0 + 35, by0 - 4, 0.8)
    text('J1 = MEP header (pins point to the upper edge)', bx0 + 35, by1 + 3, 0.8)
    out.append(['gr_line', ['start', num(bx0), num(by1 + 6)], ['end', num(bx0 + 10), num(by1 + 6)],
                ['stroke', ['width', '0.2'], ['type', 'solid']], ['layer', lay], U('fit', 'scale')])
    text('10 mm', bx0 + 5, by1 + 7.2, 0.8)
    text('70 x 28 mm', bx1 - 6, by1 + 6, 0.8)
    return out


LAYERS = ['layers', ['0', '"F.Cu"', 'signal'], ['2', '"B.Cu"', 'signal'],
          ['9', '"F.Adhes"', 'user', '"F.Adhesive"'], ['11', '"B.Adhes"', 'user', '"B.Adhesive"'],
          ['13', '"F.Paste"', 'user'], ['15', '"B.Paste"', 'user'],
          ['5', '"F.SilkS"', 'user', '"F.Silkscreen"'], ['7', '"B.SilkS"', 'user', '"B.Silkscreen"'],
          ['1', '"F.Mask"', 'user'], ['3', '"B.Mask"', 'user'],
          ['17', '"Dwgs.User"', 'user', '"User.Drawings"'], ['19', '"Cmts.User"', 'user', '"User.Comments"'],
          ['21', '"Eco1.User"', 'user', '"User.Eco1"'], ['23', '"Eco2.User"', 'user', '"User.Eco2"'],
          ['25', '"Edge.Cuts"', 'user'], ['27', '"Margin"', 'user'],
          ['31', '"F.CrtYd"', 'user', '"F.Courtyard"'], ['29', '"B.CrtYd"', 'user', '"B.Courtyard"'],
          ['35', '"F.Fab"', 'user'], ['33', '"B.Fab"', 'user']]


def fill_zones(path, back=()):
    """Flip the back-side footprints and fill the pours with KiCad's own code (pcbnew Python
    module), then save."""
    code = ('import pcbnew,sys\n'
            'b=pcbnew.LoadBoard(sys.argv[1])\n'
            'for ref in sys.argv[2:]:\n'
            '    fp=b.FindFootprintByReference(ref)\n'
            '    fp.Flip(fp.GetPosition(), pcbnew.FLIP_DIRECTION_LEFT_RIGHT)\n'
            'pcbnew.ZONE_FILLER(b).Fill(b.Zones())\n'
            'pcbnew.SaveBoard(sys.argv[1], b)\n')
    py = os.environ.get('KICAD_PYTHON', '/usr/bin/python3')
    subprocess.run([py, '-c', code, path] + list(back), check=True)


# ------------------------------------------------------------------------------------------------
# routing
# ------------------------------------------------------------------------------------------------

def pad_cells(R, p, layers):
    cells = set()
    i0, j0 = R.cell(p['x'] - p['w'] / 2, p['y'] - p['h'] / 2)
    i1, j1 = R.cell(p['x'] + p['w'] / 2, p['y'] + p['h'] / 2)
    for i in range(i0, i1 + 1):
        for j in range(j0, j1 + 1):
            x, y = R.xy(i, j)
            if abs(x - p['x']) <= p['w'] / 2 - 0.02 and abs(y - p['y']) <= p['h'] / 2 - 0.02:
                for L in layers:
                    cells.add((L, i, j))
    if not cells:
        i, j = R.cell(p['x'], p['y'])
        cells = {(L, i, j) for L in layers}
    return cells


def seg_cells(R, layer, x1, y1, x2, y2):
    n = max(1, int(math.hypot(x2 - x1, y2 - y1) / (R.g * 0.5)))
    out = set()
    for k in range(n + 1):
        t = k / n
        i, j = R.cell(x1 + (x2 - x1) * t, y1 + (y2 - y1) * t)
        x, y = R.xy(i, j)
        # only cells whose centre is (nearly) on the centre line
        if _pt_seg(x, y, x1, y1, x2, y2) < 0.03:
            out.add((layer, i, j))
    return out


def _pt_seg(x, y, x1, y1, x2, y2):
    vx, vy = x2 - x1, y2 - y1
    L2 = vx * vx + vy * vy
    t = 0 if L2 == 0 else max(0, min(1, ((x - x1) * vx + (y - y1) * vy) / L2))
    return math.hypot(x - x1 - t * vx, y - y1 - t * vy)


def emit_path(R, net, path, w, clr, free, start_pad, end_pad):
    """Turn a cell path into segments and vias; stubs to pad centres."""
    runs = []
    cur = [path[0]]
    for s in path[1:]:
        if s[0] != cur[-1][0]:
            runs.append(cur)
            cur = [s]
        else:
            cur.append(s)
    runs.append(cur)
    for k, run in enumerate(runs):
        L = run[0][0]
        pts = [R.xy(i, j) for (_, i, j) in run]
        pts = R.smooth(pts, free[L])
        if k == 0 and start_pad is not None and L in start_pad['layers']:
            pts = [(start_pad['x'], start_pad['y'])] + pts
        if k == len(runs) - 1 and end_pad is not None and L in end_pad['layers']:
            pts = pts + [(end_pad['x'], end_pad['y'])]
        for a, b in zip(pts, pts[1:]):
            if math.hypot(b[0] - a[0], b[1] - a[1]) < 1e-6:
                continue
            R.segments.append((net, L, a[0], a[1], b[0], b[1], w))
            R.add_seg(net, L, a[0], a[1], b[0], b[1], w, clr)
        if k < len(runs) - 1:
            x, y = R.xy(run[-1][1], run[-1][2])
            R.vias.append((net, x, y, VIA_D))
            R.add_circle(net, {F, B}, x, y, VIA_D / 2, clr)


def part_pos(ref):
    return next(p['pos'] for p in design.PARTS if p['ref'] == ref)


def usb_fanout(R, pos):
    """Hand-drawn fan-out of the USB-C receptacle (pad row at local y = -4.045): D+ pads A6/B6
    joined under the receptacle body, D- pads B7/A7 joined just outside the row, VBUS pads
    A4/A9 joined on B.Cu outside the row. Local footprint coordinates, rotated with the part."""
    x0, y0, r = pos
    py = -4.045

    def bxy(lx, ly):
        dx, dy = rot(lx, ly, r)
        return x0 + dx, y0 + dy

    def track(net, layer, pts, w):
        for a, b in zip(pts, pts[1:]):
            (xa, ya), (xb, yb) = bxy(*a), bxy(*b)
            R.segments.append((net, layer, xa, ya, xb, yb, w))
            R.add_seg(net, layer, xa, ya, xb, yb, w, CLR[netclass(net)])

    def via(net, lx, ly):
        x, y = bxy(lx, ly)
        R.vias.append((net, x, y, VIA_D))
        R.add_circle(net, {F, B}, x, y, VIA_D / 2, CLR[netclass(net)])
    track('/USB_DP_C', F, [(-0.25, py), (-0.25, py + 1.545), (0.75, py + 1.545), (0.75, py)], 0.25)
    track('/USB_DN_C', F, [(-0.75, py), (-0.75, py - 1.355), (0.25, py - 1.355), (0.25, py)], 0.25)
    track('/CC1', F, [(-1.25, py), (-1.25, py - 1.2)], 0.25)
    track('/CC2', F, [(1.75, py), (1.75, py - 1.2)], 0.25)
    track('/VBUS', F, [(-2.45, py), (-2.45, py - 1.855)], 0.4)
    track('/VBUS', F, [(2.45, py), (2.45, py - 1.855)], 0.4)
    via('/VBUS', -2.45, py - 1.855)
    via('/VBUS', 2.45, py - 1.855)
    track('/VBUS', B, [(-2.45, py - 1.855), (2.45, py - 1.855)], 0.5)


def route_all(R, allpads):
    bynet = {}
    for p in allpads:
        if p['net'] and not p['net'].startswith('unconnected') and p['kind'] != 'np_thru_hole':
            bynet.setdefault(p['net'], []).append(p)
    order = []
    for net, pads in bynet.items():
        if net == 'GND':
            continue
        # merge duplicate pads (same ref+number) into one terminal group
        xs = [p['x'] for p in pads]
        ys = [p['y'] for p in pads]
        order.append(((max(xs) - min(xs)) + (max(ys) - min(ys)), net))
    order.sort()
    # the USB fan-out first; then the module's three MEP lines, the one on the pad nearest the
    # transceiver first, so each keeps the innermost free lane past the others
    prio = [n for n in ('/CC1', '/CC2', '/USB_DP_C', '/USB_DN_C', '/USB_DP', '/USB_DN', '/VBUS',
                        '/RXD_TTL', '/ENABLE_TTL', '/TXD_TTL') if n in bynet]
    nets = prio + [n for _, n in order if n not in prio]
    failed = []
    # ground vias next to the SMD ground pads first (short, direct), then the signals
    gnd_drops(R, bynet.get('GND', []))
    for net in nets:
        if not route_net(R, net, bynet[net]):
            failed.append(net)
    stitch(R)
    return failed


def route_net(R, net, pads, width=None):
    cls = netclass(net)
    w = width or TRACK[cls]
    clr = CLR[cls]
    free = [~R.blocked(net, L, w / 2 + 0.05, clr) for L in (F, B)]
    viafree = (~R.blocked(net, F, VIA_D / 2 + 0.05, clr)) & (~R.blocked(net, B, VIA_D / 2 + 0.05, clr)) & ~R.inpad
    narrow = None
    # terminals: group pads by (ref, number) - e.g. the USB VBUS pins are separate terminals
    terms = {}
    for p in pads:
        terms.setdefault((p['ref'], p['number']), []).append(p)
    terms = list(terms.values())
    extra = {}
    pre = [sg for sg in R.segments if sg[0] == net]
    pvias = [v for v in R.vias if v[0] == net]
    if pre or pvias:
        # copper drawn by hand (fan-outs): merge the terminals it touches into one, and let
        # every point of it be a place to connect to
        pseudo, cells = [], set()
        for (_, L, x1, y1, x2, y2, ww) in pre:
            cells |= seg_cells(R, L, x1, y1, x2, y2)
            for (x, y) in ((x1, y1), (x2, y2)):
                pseudo.append(dict(ref='~', number='%.2f,%.2f' % (x, y), x=x, y=y, w=0.05, h=0.05, layers={L}))
        for (_, x, y, d) in pvias:
            i, j = R.cell(x, y)
            cells |= {(F, i, j), (B, i, j)}
            pseudo.append(dict(ref='~', number='v%.2f,%.2f' % (x, y), x=x, y=y, w=0.05, h=0.05, layers={F, B}))

        def touches(pp):
            return any(abs(q_['x'] - pp['x']) <= pp['w'] / 2 + 0.01 and abs(q_['y'] - pp['y']) <= pp['h'] / 2 + 0.01
                       and (q_['layers'] & pp['layers']) for q_ in pseudo)
        merged = [t for t in terms if any(touches(pp) for pp in t)]
        group = [pp for t in merged for pp in t] + pseudo
        terms = [group] + [t for t in terms if t not in merged]
        extra[id(group)] = cells
        for (L, i, j) in cells:
            free[L][j, i] = True
    # own-pad cells are always usable by this net
    for t in terms:
        for p in t:
            for (L, i, j) in pad_cells(R, p, p['layers']):
                free[L][j, i] = True
    tree = set()
    tree_pads = []
    first = terms[0]
    tree |= extra.get(id(first), set())
    for p in first:
        tree |= pad_cells(R, p, p['layers'])
        tree_pads.append(p)
    rest = terms[1:]
    ok = True
    while rest:
        # nearest terminal to the tree
        best = None
        for t in rest:
            for p in t:
                for tp in tree_pads:
                    d = math.hypot(p['x'] - tp['x'], p['y'] - tp['y'])
                    if best is None or d < best[0]:
                        best = (d, t, p, tp)
        _, t, p, tp = best
        rest.remove(t)
        starts = set(extra.get(id(t), set()))
        for pp in t:
            starts |= pad_cells(R, pp, pp['layers'])
        if starts & tree:
            tree |= starts
            tree_pads += t
            continue
        xs = [p['x'], tp['x']]
        ys = [p['y'], tp['y']]
        m = 6.0
        win = R._window(min(xs) - m, min(ys) - m, max(xs) + m, max(ys) + m)
        path = None
        for grow in (0, 12.0):
            if grow:
                win = R._window(min(xs) - grow, min(ys) - grow, max(xs) + grow, max(ys) + grow)
            path = R.astar(starts, tree, free, viafree, (tp['x'], tp['y']), win)
            if path:
                break
        wuse, fuse = w, free
        if not path and w > 0.3:
            # power net between fine-pitch pads: fall back to a 0.3 mm track
            if narrow is None:
                narrow = [~R.blocked(net, L, 0.15 + 0.05, clr) for L in (F, B)]
                for tt in terms:
                    for pp in tt:
                        for (L, i, j) in pad_cells(R, pp, pp['layers']):
                            narrow[L][j, i] = True
            path = R.astar(starts, tree, narrow, viafree, (tp['x'], tp['y']), win)
            wuse, fuse = 0.3, narrow
        if not path:
            ok = False
            print('  could not route %s: %s.%s -> %s.%s' % (net, p['ref'], p['number'], tp['ref'], tp['number']))
            continue
        end = path[-1]
        end_pad = None
        for q_ in tree_pads:
            if end in pad_cells(R, q_, q_['layers']):
                end_pad = q_
                break
        nseg = len(R.segments)
        emit_path(R, net, path, wuse, clr, fuse, p, end_pad)
        for s in R.segments[nseg:]:
            tree |= seg_cells(R, s[1], s[2], s[3], s[4], s[5])
        for v in R.vias:
            if v[0] == net:
                i, j = R.cell(v[1], v[2])
                tree |= {(F, i, j), (B, i, j)}
        for pp in t:
            tree |= pad_cells(R, pp, pp['layers'])
        tree_pads += t
        # refresh own-net free space is unchanged; other nets are not yet routed
    if not ok and width is None and cls == 'pwr':
        return ok
    return ok


def gnd_drops(R, pads):
    """Connect each top-side GND pad to the bottom pour with a short track and a via
    (or to a ground via that is already close)."""
    import numpy as np
    net = 'GND'
    w, clr = 0.4, CLR['pwr']
    free = [~R.blocked(net, L, w / 2 + 0.05, clr) for L in (F, B)]
    for p in pads:
        for (L, i, j) in pad_cells(R, p, p['layers']):
            free[L][j, i] = True
    done = set()
    for p in pads:
        key = (p['ref'], p['number'], round(p['x'], 2), round(p['y'], 2))
        if B in p['layers'] or key in done:
            continue
        if p['ref'] == 'U1' and p['number'] not in ('61',):
            continue   # the module's ring GND pads join the pour; each centre pad gets a via beside it
        done.add(key)
        viafree = (~R.blocked(net, F, VIA_D / 2 + 0.05, clr)) & (~R.blocked(net, B, VIA_D / 2 + 0.05, clr)) & ~R.inpad
        goal = viafree.copy()
        # new vias keep 1 mm from existing ones; existing ground vias are goals themselves
        for v in R.vias:
            i, j = R.cell(v[1], v[2])
            r = int(10 / 1)  # 1.0 mm in cells
            goal[max(0, j - r):j + r + 1, max(0, i - r):i + r + 1] = False
        old = []
        for v in R.vias:
            if v[0] == net:
                i, j = R.cell(v[1], v[2])
                goal[j, i] = True
                old.append((i, j))
        goal &= ~R.inpad      # never a via in a pad, the module's centre pads included
        starts = pad_cells(R, p, {F})
        win = R._window(p['x'] - 4, p['y'] - 4, p['x'] + 4, p['y'] + 4)
        path = R.astar(starts, set(), free, np.zeros_like(viafree), (p['x'], p['y']), win, goal=goal)
        if not path:
            print('  no GND via for %s.%s' % (p['ref'], p['number']))
            continue
        end = path[-1]
        x, y = R.xy(end[1], end[2])
        pts = R.smooth([(p['x'], p['y'])] + [R.xy(i, j) for (_, i, j) in path], free[F])
        for a, b in zip(pts, pts[1:]):
            if math.hypot(b[0] - a[0], b[1] - a[1]) > 1e-6:
                R.segments.append((net, F, a[0], a[1], b[0], b[1], w))
                R.add_seg(net, F, a[0], a[1], b[0], b[1], w, clr)
        if (end[1], end[2]) not in old:
            R.vias.append((net, x, y, VIA_D))
            R.add_circle(net, {F, B}, x, y, VIA_D / 2, clr)


def stitch(R, pitch=3.0):
    """Ground stitching vias wherever there is room (ties the two pours together)."""
    net = 'GND'
    clr = CLR['pwr'] + 0.1
    viafree = (~R.blocked(net, F, VIA_D / 2 + 0.05, clr)) & (~R.blocked(net, B, VIA_D / 2 + 0.05, clr)) & ~R.inpad
    bx0, by0, bx1, by1 = design.BOARD
    holes = [(o['g'][0], o['g'][1], max(o['g'][2], o['g'][3]) if o['kind'] == 'rect' else o['g'][2])
             for o in R.objs if o['layers'] == {F, B} and o['kind'] in ('rect', 'circ')]
    y = by0 + 1.5
    while y < by1 - 1:
        x = bx0 + 1.5
        while x < bx1 - 1:
            i, j = R.cell(x, y)
            if viafree[j, i] and not any(math.hypot(v[1] - x, v[2] - y) < 1.5 for v in R.vias) \
                    and not any(math.hypot(h[0] - x, h[1] - y) < h[2] + 0.6 for h in holes):
                R.vias.append((net, x, y, VIA_D))
                R.add_circle(net, {F, B}, x, y, VIA_D / 2, CLR['pwr'])
            x += pitch
        y += pitch
