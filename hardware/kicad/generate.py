#!/usr/bin/env python3
"""Generate the KiCad 9 project of the MEP drawer PCB from design.py.

    python3 hardware/kicad/generate.py     (a Python 3 with numpy; plus kicad-cli, and KiCad's pcbnew
                                            module for /usr/bin/python3 or $KICAD_PYTHON)

Steps: write the project-local library (ESP32-S3-MINI-1 symbol and footprint, drawn from the module
datasheet's dimensions), the schematic (symbols placed by function so the signal flows left to
right; nets drawn as wires wherever a wire fits without touching another net or crossing a symbol,
a net label where it does not, and each net's name on one pin), export its netlist with kicad-cli, place the footprints
(copied from KiCad's standard libraries), route every net with the small grid router in
router.py, add the ground pours and let KiCad's pcbnew fill them. The outputs are committed; run
this again only when design.py changes, then run check.sh.
"""
import json
import os
import re
import subprocess
import sys
import uuid as uuidlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from sexpr import parse, dump, q, unq, num, find, findall  # noqa: E402
import design  # noqa: E402

NAME = 'mep-drawer'
SYMDIR = os.environ.get('KICAD9_SYMBOL_DIR', '/usr/share/kicad/symbols')
FPDIR = os.environ.get('KICAD9_FOOTPRINT_DIR', '/usr/share/kicad/footprints')
LIBDIR = os.path.join(HERE, 'lib')
TITLE = 'MEP drawer module (ESP32-S3)'
REV = 'C'
DATE = '2026-11-26'


def uid(*parts):
    """Stable UUIDs so regenerating gives small diffs."""
    return str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, 'mep-drawer/' + '/'.join(str(p) for p in parts)))


def U(*parts):
    return ['uuid', q(uid(*parts))]


FONT = ['effects', ['font', ['size', '1.27', '1.27']]]
FONT_HIDE = ['effects', ['font', ['size', '1.27', '1.27']], ['hide', 'yes']]


# ------------------------------------------------------------------------------------------------
# Project-local library: ESP32-S3-MINI-1
# ------------------------------------------------------------------------------------------------

def esp_symbol(name=design.ESP_MODULE):
    pins = []

    def pin(kind, x, y, ang, pname, number, hide=False):
        p = ['pin', kind, 'line', ['at', num(x), num(y), str(ang)], ['length', '2.54']]
        if hide:
            p.append(['hide', 'yes'])
        p += [['name', q(pname), FONT], ['number', q(number), FONT]]
        pins.append(p)

    # right: supply, EN and the GPIOs the board uses (IO0..IO10), then the other low GPIOs;
    # left: USB, UART0 and the high GPIOs (the PSRAM's IO26 among them)
    right = ['3V3', 'EN', None] + ['IO%d' % n for n in range(11)] + [None] + \
        ['IO%d' % n for n in range(11, 19)] + ['IO21']
    left = [('IO19', 'IO19/USB_D-'), ('IO20', 'IO20/USB_D+'), None, ('RXD0', 'RXD0/IO44'),
            ('TXD0', 'TXD0/IO43'), ('IO26', 'IO26/PSRAM_CS'), None] + \
        [('IO%d' % n, 'IO%d' % n) for n in (33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 45, 46, 47, 48)]
    y = 25.4
    for n in right:
        if n:
            kind = 'power_in' if n == '3V3' else 'input' if n == 'EN' else 'bidirectional'
            pin(kind, 15.24, y, 180, n, design.ESP_PINS[n])
        y -= 2.54
    bottom = y
    y = 25.4
    for e in left:
        if e:
            pin('bidirectional', -15.24, y, 0, e[1], design.ESP_PINS[e[0]])
        y -= 2.54
    bottom = min(bottom, y)
    for i, n in enumerate(design.ESP_GND):
        pin('power_in' if i == 0 else 'passive', 0, bottom - 2.54, 90, 'GND', n, hide=i > 0)
    props = [
        ['property', q('Reference'), q('U'), ['at', '-12.7', '29.21', '0'], FONT],
        ['property', q('Value'), q(name), ['at', '0', '29.21', '0'], FONT],
        ['property', q('Footprint'), q('MEP:' + design.ESP_MODULE), ['at', '0', '-60', '0'], FONT_HIDE],
        ['property', q('Datasheet'), q('https://www.espressif.com/sites/default/files/documentation/esp32-s3-mini-1_mini-1u_datasheet_en.pdf'),
         ['at', '0', '-62', '0'], FONT_HIDE],
        ['property', q('Description'), q('ESP32-S3 Wi-Fi/BLE module, up to 8 MB flash, 2 MB quad PSRAM (-N4R2), PCB antenna, 15.4 x 20.5 mm'),
         ['at', '0', '-64', '0'], FONT_HIDE],
        ['property', q('ki_keywords'), q('ESP32 ESP32-S3 Xtensa WiFi module PSRAM'), ['at', '0', '0', '0'], FONT_HIDE],
    ]
    body = ['symbol', q(name + '_0_1'),
            ['rectangle', ['start', '-12.7', '27.94'], ['end', '12.7', num(bottom)],
             ['stroke', ['width', '0.254'], ['type', 'default']], ['fill', ['type', 'background']]]]
    unit = ['symbol', q(name + '_1_1')] + pins
    return ['symbol', q(name), ['exclude_from_sim', 'no'], ['in_bom', 'yes'], ['on_board', 'yes']] + props + [body, unit]


def esp_footprint():
    """ESP32-S3-MINI-1 land pattern from the module datasheet's dimensions (15.4 x 20.5 mm;
    15 pads a side at 0.85 mm pitch, 0.8 x 0.4 mm; the ground pad 61 as a 3 x 3 array of
    1.2 mm squares at 1.65 mm pitch; corner pads 62-65, 0.8 mm square). Origin at the centre
    of the pad field; the antenna is at -y (its 5.1 mm beyond y = -7.7)."""
    items = []
    B = design.ESP_BODY

    def line(x1, y1, x2, y2, layer, w):
        items.append(['fp_line', ['start', num(x1), num(y1)], ['end', num(x2), num(y2)],
                      ['stroke', ['width', num(w)], ['type', 'solid']], ['layer', q(layer)],
                      U('espfp', 'line', x1, y1, x2, y2, layer)])

    def pad(n, x, y, w, h, rot=0, paste=True):
        at = ['at', num(x), num(y)] + ([str(rot)] if rot else [])
        layers = ['layers', q('F.Cu'), q('F.Mask')] + ([q('F.Paste')] if paste else [])
        items.append(['pad', q(n), 'smd', 'rect', at, ['size', num(w), num(h)], layers,
                      U('espfp', 'pad', n, x, y)])

    P, R = 0.85, 7.0
    for i in range(15):                      # pins 1..15, left side, top to bottom
        pad(str(1 + i), -R, -5.95 + P * i, 0.8, 0.4)
    for i in range(15):                      # pins 16..30, bottom row, left to right
        pad(str(16 + i), -5.95 + P * i, R, 0.8, 0.4, 90)
    for i in range(15):                      # pins 31..45, right side, bottom to top
        pad(str(31 + i), R, 5.95 - P * i, 0.8, 0.4)
    for i in range(15):                      # pins 46..60 (GND), top row, right to left
        pad(str(46 + i), 5.95 - P * i, -R, 0.8, 0.4, 90)
    for ix in (-1, 0, 1):                    # pin 61: ground pad as a 3 x 3 array
        for iy in (-1, 0, 1):
            pad('61', 1.65 * ix, 1.65 * iy, 1.2, 1.2)
    for n, (x, y) in zip(('62', '63', '64', '65'), ((-R, -R), (-R, R), (R, R), (R, -R))):
        pad(n, x, y, 0.8, 0.8)
    A = B + 5.1                              # the antenna end
    # fab outline and antenna area
    line(-B, -A, B, -A, 'F.Fab', 0.1)
    line(B, -A, B, B, 'F.Fab', 0.1)
    line(B, B, -B, B, 'F.Fab', 0.1)
    line(-B, B, -B, -A, 'F.Fab', 0.1)
    line(-B, -B, B, -B, 'F.Fab', 0.1)
    # silkscreen: antenna area outline and the corners outside the pads
    s = B + 0.12
    for sx in (-1, 1):
        line(sx * s, -A - 0.12, sx * s, -B, 'F.SilkS', 0.12)
        line(sx * s, s, sx * 6.5, s, 'F.SilkS', 0.12)
    line(-s, -A - 0.12, s, -A - 0.12, 'F.SilkS', 0.12)
    line(-s, s, -s, 7.6, 'F.SilkS', 0.12)
    # courtyard
    c = B + 0.25
    line(-c, -A - 0.25, c, -A - 0.25, 'F.CrtYd', 0.05)
    line(c, -A - 0.25, c, c, 'F.CrtYd', 0.05)
    line(c, c, -c, c, 'F.CrtYd', 0.05)
    line(-c, c, -c, -A - 0.25, 'F.CrtYd', 0.05)
    fp = ['footprint', q(design.ESP_MODULE), ['version', '20241229'], ['generator', q('mep-drawer-generate')],
          ['layer', q('F.Cu')],
          ['descr', q('Espressif ESP32-S3-MINI-1, 15.4 x 20.5 mm, land pattern drawn from the module datasheet dimensions')],
          ['tags', q('ESP32-S3 module')],
          ['property', q('Reference'), q('REF**'), ['at', '0', num(-A - 1.2), '0'], ['layer', q('F.SilkS')],
           U('espfp', 'ref'), ['effects', ['font', ['size', '1', '1'], ['thickness', '0.15']]]],
          ['property', q('Value'), q(design.ESP_MODULE), ['at', '0', '-10', '0'], ['layer', q('F.Fab')],
           U('espfp', 'val'), ['effects', ['font', ['size', '1', '1'], ['thickness', '0.15']]]],
          ['attr', 'smd']] + items + [['embedded_fonts', 'no']]
    return fp


def write_library():
    os.makedirs(os.path.join(LIBDIR, 'MEP.pretty'), exist_ok=True)
    lib = ['kicad_symbol_lib', ['version', '20241209'], ['generator', q('mep-drawer-generate')],
           ['generator_version', q('9.0')], esp_symbol()]
    with open(os.path.join(LIBDIR, 'MEP.kicad_sym'), 'w') as f:
        f.write(dump(lib) + '\n')
    for old in os.listdir(os.path.join(LIBDIR, 'MEP.pretty')):
        os.remove(os.path.join(LIBDIR, 'MEP.pretty', old))
    with open(os.path.join(LIBDIR, 'MEP.pretty', design.ESP_MODULE + '.kicad_mod'), 'w') as f:
        f.write(dump(esp_footprint()) + '\n')
    # The project tables also name the standard KiCad libraries this design uses (through KiCad's
    # own path variables), so ERC/DRC find them on a machine whose global tables are empty.
    symlibs = sorted({p['sym'].split(':')[0] for p in design.PARTS} | {'power'})
    fplibs = sorted({p['fp'].split(':')[0] for p in design.PARTS})
    with open(os.path.join(HERE, 'sym-lib-table'), 'w') as f:
        f.write('(sym_lib_table\n\t(version 7)\n')
        for lib in symlibs:
            uri = '${KIPRJMOD}/lib/MEP.kicad_sym' if lib == 'MEP' else '${KICAD9_SYMBOL_DIR}/%s.kicad_sym' % lib
            f.write('\t(lib (name "%s")(type "KiCad")(uri "%s")(options "")(descr ""))\n' % (lib, uri))
        f.write(')\n')
    with open(os.path.join(HERE, 'fp-lib-table'), 'w') as f:
        f.write('(fp_lib_table\n\t(version 7)\n')
        for lib in fplibs:
            uri = '${KIPRJMOD}/lib/MEP.pretty' if lib == 'MEP' else '${KICAD9_FOOTPRINT_DIR}/%s.pretty' % lib
            f.write('\t(lib (name "%s")(type "KiCad")(uri "%s")(options "")(descr ""))\n' % (lib, uri))
        f.write(')\n')


# ------------------------------------------------------------------------------------------------
# Symbols
# ------------------------------------------------------------------------------------------------

_libcache = {}


def lib_symbol(lib_id):
    """Flattened symbol definition named 'Lib:Name', ready for a schematic's lib_symbols."""
    libname, name = lib_id.split(':')
    if libname == 'MEP':
        path = os.path.join(LIBDIR, 'MEP.kicad_sym')
    else:
        path = os.path.join(SYMDIR, libname + '.kicad_sym')
    if path not in _libcache:
        with open(path) as f:
            _libcache[path] = parse(f.read())
    lib = _libcache[path]
    syms = {unq(s[1]): s for s in findall(lib, 'symbol')}
    node = syms[name]
    ext = find(node, 'extends')
    if ext:
        parent = syms[unq(ext[1])]
        pname = unq(parent[1])
        out = ['symbol', q(lib_id)]
        for x in parent[2:]:
            if isinstance(x, list) and x[0] == 'property':
                continue
            if isinstance(x, list) and x[0] == 'symbol':
                x = ['symbol', q(unq(x[1]).replace(pname, name, 1))] + x[2:]
            out.append(x)
        props = [x for x in node if isinstance(x, list) and x[0] == 'property']
        # properties go before the sub-symbols
        idx = next(i for i, x in enumerate(out) if isinstance(x, list) and x[0] == 'symbol')
        out[idx:idx] = props
        return out
    return ['symbol', q(lib_id)] + node[2:]


def sym_pins(symnode):
    """{number: (x, y, angle, type, name)} in library coordinates (y up)."""
    pins = {}
    for sub in findall(symnode, 'symbol'):
        for p in findall(sub, 'pin'):
            at = find(p, 'at')
            pins.setdefault(unq(find(p, 'number')[1]), (float(at[1]), float(at[2]), int(float(at[3])), p[1],
                                                         unq(find(p, 'name')[1])))
    return pins


def sym_bbox(symnode):
    xs, ys = [], []
    for sub in findall(symnode, 'symbol'):
        for g in sub[2:]:
            if not isinstance(g, list):
                continue
            for key in ('start', 'end', 'xy', 'center', 'at'):
                for pt in _walk(g, key):
                    xs.append(float(pt[1]))
                    ys.append(float(pt[2]))
    return min(xs), min(ys), max(xs), max(ys)


def _walk(node, key):
    if isinstance(node, list):
        if node and node[0] == key and len(node) >= 3:
            yield node
        for x in node:
            yield from _walk(x, key)


# ------------------------------------------------------------------------------------------------
# Schematic
# ------------------------------------------------------------------------------------------------

G = 2.54


def snap(v):
    return round(v / 1.27) * 1.27


def write_schematic():
    root = uid('root-sheet')
    libsyms = {}
    items = []
    pwr_count = [0]

    def getsym(lib_id):
        if lib_id not in libsyms:
            libsyms[lib_id] = lib_symbol(lib_id)
        return libsyms[lib_id]

    def place_symbol(lib_id, ref, value, x, y, rot=0, fields=(), footprint='', in_bom=True, key=None,
                     ref_at=None, val_at=None, hide_ref=False, hide_val=False):
        s = getsym(lib_id)
        key = key or ref
        props = []
        bx0, by0, bx1, by1 = sym_bbox(s)
        if len(sym_pins(s)) >= 6:      # ICs and connectors: name above the body, clear of the pins
            ra = ref_at or (x + bx0, y - by1 - 5.08)
            va = val_at or (x + bx0, y - by1 - 2.54)
        else:
            ra = ref_at or (x + bx1 + 1.27, y - by1 + 1.27)
            va = val_at or (x + bx1 + 1.27, y - by1 + 3.81)

        def prop(k, v, at, hide, justify=None):
            eff = ['effects', ['font', ['size', '1.27', '1.27']]]
            if justify:
                eff.append(['justify', justify])
            if hide:
                eff.append(['hide', 'yes'])
            return ['property', q(k), q(v), ['at', num(at[0]), num(at[1]), '0'], eff]
        props.append(prop('Reference', ref, ra, hide_ref, 'left'))
        props.append(prop('Value', value, va, hide_val, 'left'))
        props.append(prop('Footprint', footprint, (x, y), True))
        datasheet = ''
        for p in findall(s, 'property'):
            if unq(p[1]) == 'Datasheet':
                datasheet = unq(p[2])
        props.append(prop('Datasheet', datasheet, (x, y), True))
        for k, v in fields:
            props.append(prop(k, v, (x, y), True))
        pinuuids = [['pin', q(n), U('sch', key, 'pin', n)] for n in sorted(sym_pins(s))]
        node = ['symbol', ['lib_id', q(lib_id)], ['at', num(x), num(y), str(rot)], ['unit', '1'],
                ['exclude_from_sim', 'no'], ['in_bom', 'yes' if in_bom else 'no'], ['on_board', 'yes'],
                ['dnp', 'no'], U('sch', key)] + props + pinuuids + [
            ['instances', ['project', q(NAME), ['path', q('/' + root), ['reference', q(ref)], ['unit', '1']]]]]
        items.append(node)
        return node

    def wire(x1, y1, x2, y2):
        items.append(['wire', ['pts', ['xy', num(x1), num(y1)], ['xy', num(x2), num(y2)]],
                      ['stroke', ['width', '0'], ['type', 'default']], U('sch', 'wire', x1, y1, x2, y2)])

    def label(name, x, y, direction):
        ang = {'left': 180, 'right': 0, 'up': 90, 'down': 270}[direction]
        just = 'right' if direction in ('left', 'down') else 'left'
        items.append(['label', q(name), ['at', num(x), num(y), str(ang)], ['fields_autoplaced', 'yes'],
                      ['effects', ['font', ['size', '1.27', '1.27']], ['justify', just, 'bottom']],
                      U('sch', 'label', name, x, y)])

    def power(name, x, y, direction):
        pwr_count[0] += 1
        ref = '#PWR%02d' % pwr_count[0]
        if name == 'GND':
            rot = {'down': 0, 'right': 90, 'up': 180, 'left': 270}[direction]
        else:
            rot = {'up': 0, 'left': 90, 'down': 180, 'right': 270}[direction]
        lib_id = 'power:PWR_FLAG' if name == 'PWR_FLAG' else 'power:' + name
        if name == 'PWR_FLAG':
            ref = '#FLG%02d' % pwr_count[0]
            rot = {'up': 0, 'left': 90, 'down': 180, 'right': 270}[direction]
        vy = y + (3.81 if direction == 'down' else -3.81)
        place_symbol(lib_id, ref, name, x, y, rot, in_bom=False, key=ref,
                     ref_at=(x, y), val_at=(x + 1.27, vy), hide_ref=True)

    def noconnect(x, y):
        items.append(['no_connect', ['at', num(x), num(y)], U('sch', 'nc', x, y)])

    # --- placement by function: power path along the top, USB -> module -> transceiver -> MEP
    # connector below it, so the wires show the signal flow (schematic mm, y down; 180 = flipped) ---
    SCH = {
        # power in, protection, buck converter
        'D1': (52, 60, 180), 'D2': (66, 72, 0), 'C1': (78, 70, 0), 'C2': (90, 70, 0), 'C14': (102, 70, 0),
        'R1': (112, 70, 0), 'R13': (120, 82, 0), 'R15': (120, 46, 0), 'R14': (108, 46, 0),
        'U2': (144, 62, 0), 'C3': (166, 58, 0), 'D4': (177, 76, 0), 'L1': (184, 60, 0),
        'R2': (197, 60, 0), 'R3': (197, 76, 0), 'C4': (210, 70, 0), 'C5': (220, 70, 0),
        # USB
        'J2': (40, 150, 0), 'R4': (66, 112, 0), 'R5': (72, 112, 0), 'U5': (88, 152, 0), 'D3': (80, 122, 180),
        # module and its parts
        'U1': (142, 160, 0), 'C7': (112, 188, 0), 'C8': (120, 188, 0), 'R6': (168, 126, 0), 'C6': (174, 144, 0),
        'SW2': (188, 140, 0), 'SW1': (182, 196, 0), 'R7': (174, 186, 0),
        'R10': (190, 172, 0), 'D6': (202, 180, 180),
        # transceiver, its supply switch, MEP connector
        'U4': (190, 112, 0), 'R11': (172, 108, 0), 'R17': (212, 116, 0), 'C13': (242, 116, 0), 'R16': (200, 150, 0),
        'U3': (232, 160, 0), 'C9': (205, 141, 0), 'C10': (264, 140, 0), 'C11': (274, 150, 0), 'C12': (294, 150, 0),
        'D5': (268, 162.56, 180), 'R12': (286, 164, 0), 'J1': (314, 168, 0),
        # test points and holes
        'TP1': (40, 196, 0), 'TP2': (50, 196, 0), 'TP3': (60, 196, 0), 'TP4': (70, 196, 0), 'TP5': (80, 196, 0),
        'H1': (100, 200, 0), 'H2': (110, 200, 0),
    }
    missing = [p['ref'] for p in design.PARTS if p['ref'] not in SCH]
    if missing:
        raise SystemExit('generate.py: no schematic place for %s' % ', '.join(missing))
    placements = {ref: (snap(x), snap(y)) for ref, (x, y, r) in SCH.items()}
    srot = {ref: r for ref, (x, y, r) in SCH.items()}
    page_w, page_h = 345.0, 212.0

    for p in design.PARTS:
        fields = [('Manufacturer', p.get('mfr', '')), ('MPN', p.get('mpn', ''))]
        if p.get('desc'):
            fields.append(('Description', p['desc']))
        sx, sy = placements[p['ref']]
        place_symbol(p['sym'], p['ref'], p['value'], sx, sy, srot[p['ref']], fields, p['fp'], in_bom=p.get('bom', True))

    # --- pins: connection point E, stub end L (2.54 mm outwards), net -------------------------
    flag_nets = {'GND', '+3V3', 'VIN'}
    pinrecs = []          # dict(ref, number, net, E, L, direction, kind)
    bodies = []           # symbol bounding boxes (schematic coordinates)
    for p in design.PARTS:
        ref = p['ref']
        sx, sy = placements[ref]
        s = getsym(p['sym'])
        bx0, by0, bx1, by1 = sym_bbox(s)
        flip = srot[ref] == 180
        if flip:
            bx0, by0, bx1, by1 = -bx1, -by1, -bx0, -by0
        bodies.append((sx + bx0, sy - by1, sx + bx1, sy - by0))
        pins = sym_pins(s)
        done = set()
        for number, net in p['pins'].items():
            px, py, ang, kind, pname = pins[number]
            if flip:
                px, py, ang = -px, -py, (ang + 180) % 360
            ex, ey = round(sx + px, 4), round(sy - py, 4)
            if (ex, ey) in done:
                continue          # stacked pins (same net) share one wire
            done.add((ex, ey))
            d = {0: (-1, 0), 180: (1, 0), 90: (0, 1), 270: (0, -1)}[ang]
            direction = {(-1, 0): 'left', (1, 0): 'right', (0, 1): 'down', (0, -1): 'up'}[d]
            pinrecs.append(dict(ref=ref, number=number, net=net, E=(ex, ey), d=d,
                                L=(round(ex + d[0] * G, 4), round(ey + d[1] * G, 4)), direction=direction,
                                kind=kind))
        for number, (px, py, ang, kind, pname) in pins.items():
            if number not in p['pins'] and kind != 'no_connect' and not (p['ref'] == 'U1'):
                raise SystemExit('%s pin %s (%s) has no net in design.py' % (ref, number, pname))

    # segments already drawn: (net, (x1, y1), (x2, y2)); stubs first, then the power flags
    segs = [(r['net'], r['E'], r['L']) for r in pinrecs if r['net'] is not None]
    flag_at = {}
    prefer = {('C4', '1'), ('C4', '2'), ('C1', '1')}       # power flags where there is room
    for r in sorted(pinrecs, key=lambda r: (r['ref'], r['number']) not in prefer):
        if r['net'] in flag_nets and r['net'] not in flag_at:
            f = (r['L'][0] + r['d'][0] * G, r['L'][1] + r['d'][1] * G)
            flag_at[r['net']] = (r, f)
            segs.append((r['net'], r['L'], f))
    points = [(r['net'], r['E']) for r in pinrecs] + [(r['net'], r['L']) for r in pinrecs if r['net']]

    def on_seg(pt, a, b):
        (x, y), (x1, y1), (x2, y2) = pt, a, b
        if abs(x1 - x2) < 1e-6:
            return abs(x - x1) < 1e-6 and min(y1, y2) - 1e-6 <= y <= max(y1, y2) + 1e-6
        return abs(y - y1) < 1e-6 and min(x1, x2) - 1e-6 <= x <= max(x1, x2) + 1e-6

    def overlap(a, b, c, d):
        """collinear overlap of two axis-parallel segments (more than a point)"""
        if abs(a[0] - b[0]) < 1e-6 and abs(c[0] - d[0]) < 1e-6 and abs(a[0] - c[0]) < 1e-6:
            lo, hi = max(min(a[1], b[1]), min(c[1], d[1])), min(max(a[1], b[1]), max(c[1], d[1]))
            return hi - lo > 1e-6
        if abs(a[1] - b[1]) < 1e-6 and abs(c[1] - d[1]) < 1e-6 and abs(a[1] - c[1]) < 1e-6:
            lo, hi = max(min(a[0], b[0]), min(c[0], d[0])), min(max(a[0], b[0]), max(c[0], d[0]))
            return hi - lo > 1e-6
        return False

    def seg_ok(net, a, b, extra):
        if abs(a[0] - b[0]) > 1e-6 and abs(a[1] - b[1]) > 1e-6:
            return False
        for n, pt in points:
            if n != net and on_seg(pt, a, b):
                return False
        for n, c, d in segs + extra:
            if n == net:
                if overlap(a, b, c, d):
                    return False       # no doubled wires of the same net either
                continue
            if overlap(a, b, c, d) or on_seg(c, a, b) or on_seg(d, a, b) or on_seg(a, c, d) or on_seg(b, c, d):
                return False
        x0, x1 = min(a[0], b[0]), max(a[0], b[0])
        y0, y1 = min(a[1], b[1]), max(a[1], b[1])
        for (bx0, by0, bx1, by1) in bodies:   # wires stay outside every symbol (and its pins)
            if x0 < bx1 + 0.6 and x1 > bx0 - 0.6 and y0 < by1 + 0.6 and y1 > by0 - 0.6:
                return False
        return True

    def path_ok(net, pts, extra):
        new = []
        for a, b in zip(pts, pts[1:]):
            if a == b:
                continue
            if not seg_ok(net, a, b, extra + new):
                return None
            new.append((net, a, b))
        return new

    def candidates(P, Q):
        out = [[P, (Q[0], P[1]), Q], [P, (P[0], Q[1]), Q]]
        for k in range(0, 12):
            for sgn in (1, -1):
                mx = snap((P[0] + Q[0]) / 2) + sgn * k * 1.27
                my = snap((P[1] + Q[1]) / 2) + sgn * k * 1.27
                out.append([P, (mx, P[1]), (mx, Q[1]), Q])
                out.append([P, (P[0], my), (Q[0], my), Q])
        return out

    wired = set()
    why = {}
    MAXLEN = 60.0
    bynet = {}
    for r in pinrecs:
        if r['net'] and r['net'] not in ('GND', '+3V3'):
            bynet.setdefault(r['net'], []).append(r)
    labelled = set()
    for net in sorted(bynet, key=lambda n: len(bynet[n])):
        rs = bynet[net]
        labelled.add(id(rs[0]))          # every net keeps its name on one pin
        if len(rs) < 2:
            continue
        tree = [rs[0]['L']]
        rest = rs[1:]
        new = []
        while rest:
            opts = sorted(((abs(r['L'][0] - t[0]) + abs(r['L'][1] - t[1]), k, r, t)
                           for k, r in enumerate(rest) for t in tree), key=lambda x: (x[0], x[1]))
            dist, _, r, t = opts[0]
            got = None
            if dist <= MAXLEN:
                for cand in sorted(candidates(r['L'], t), key=lambda c: sum(abs(a[0] - b[0]) + abs(a[1] - b[1])
                                                                          for a, b in zip(c, c[1:]))):
                    got = path_ok(net, cand, new)
                    if got is not None:
                        break
            rest.remove(r)
            if got is None:
                labelled.add(id(r))           # too far or blocked: this pin gets a label
                why.setdefault(net, []).append('%s.%s' % (r['ref'], r['number']))
                continue
            new += got
            for _, a, b in got:
                tree += [a, b]
        segs.extend(new)
        points.extend((net, pt) for _, a, b in new for pt in (a, b))
        if new:
            wired.add(net)

    # --- emit: stubs, wires, junctions, labels / power symbols, flags, no-connects ----------------
    for r in pinrecs:
        if r['net'] is None:
            if r['kind'] != 'no_connect':
                noconnect(*r['E'])
            continue
        wire(r['E'][0], r['E'][1], r['L'][0], r['L'][1])
        if r['net'] in ('GND', '+3V3'):
            power(r['net'], r['L'][0], r['L'][1], r['direction'])
        elif id(r) in labelled:
            label(r['net'], r['L'][0], r['L'][1], r['direction'])
    for net, (r, f) in flag_at.items():
        wire(r['L'][0], r['L'][1], f[0], f[1])
        power('PWR_FLAG', f[0], f[1], r['direction'])
    ends = {}
    for net, a, b in segs:
        if net in wired and not any(a == r['E'] for r in pinrecs):
            wire(a[0], a[1], b[0], b[1])
        for pt in (a, b):
            ends[(net, pt)] = ends.get((net, pt), 0) + 1
    for (net, pt), n in ends.items():
        if n >= 3:
            items.append(['junction', ['at', num(pt[0]), num(pt[1])], ['diameter', '0'], ['color', '0', '0', '0', '0'],
                          U('sch', 'junction', pt[0], pt[1])])
    print('schematic: %d of %d nets drawn with wires; %d pins reach their net by a label only'
          % (len(wired), len(bynet), sum(len(v) for v in why.values())))
    if os.environ.get('MEP_SCH_DEBUG'):
        print(why)

    notes = [
        'MEP connector J1 (pin-out of the original dabbler.dk module J6; NOT the official numbering):',
        '  1 GND = meter terminal 19 (MEP_COM_GND)    2 RXD into the module = terminal 16A (meter TXD)',
        '  3 ENABLE = terminal 18 (MEP_COM_ENABLE)    4 +24/+26 V = terminal 16 (MEP_PWR)',
        '  5 TXD out of the module = terminal 17 (meter RXD)    6 not connected',
        'ENABLE: IO5 LOW -> T1OUT high (about +5.5 V) -> D5 -> meter ENABLE asserted; R16 keeps IO5 high (ENABLE off) while it floats.',
        'IO4 HIGH switches the MAX3232 supply (VCC_232) on through U4; R11 3.3k keeps it off from power-on (beats the 45k internal pull-up).',
        'Buck EN: R1/R13 start it at ~15 V from the meter, R15 from +3V3 keeps it on down to ~9 V, R14 lets USB alone start it.',
        'Power budget: the meter supply allows about 1 W. See README.md.',
    ]
    for i, t in enumerate(notes):
        items.append(['text', q(t), ['exclude_from_sim', 'no'], ['at', '25.4', num(page_h + 2.54 * i), '0'],
                      ['effects', ['font', ['size', '1.524', '1.524']], ['justify', 'left', 'bottom']],
                      U('sch', 'note', i)])
    page_h += 2.54 * len(notes) + 10
    paper = ['paper', q('User'), num(round(page_w + 20)), num(round(max(page_h, 200)))]

    sch = ['kicad_sch', ['version', '20250114'], ['generator', q('eeschema')], ['generator_version', q('9.0')],
           ['uuid', q(root)], paper,
           ['title_block', ['title', q(TITLE)], ['date', q(DATE)], ['rev', q(REV)],
            ['company', q('mep-firmware project')],
            ['comment', '1', q('Generated by hardware/kicad/generate.py from design.py')]],
           ['lib_symbols'] + list(libsyms.values())] + items + [
        ['sheet_instances', ['path', q('/'), ['page', q('1')]]], ['embedded_fonts', 'no']]
    with open(os.path.join(HERE, NAME + '.kicad_sch'), 'w') as f:
        f.write(dump(sch) + '\n')
    return root


def export_netlist(path):
    subprocess.run(['kicad-cli', 'sch', 'export', 'netlist', '--format', 'kicadsexpr', '-o', path,
                    os.path.join(HERE, NAME + '.kicad_sch')], check=True, stdout=subprocess.DEVNULL)
    return read_netlist(path)


def read_netlist(path):
    """{(ref, pin): net_name} plus {ref: symbol uuid (tstamps)}."""
    with open(path) as f:
        tree = parse(f.read())
    pads = {}
    for net in findall(find(tree, 'nets'), 'net'):
        name = unq(find(net, 'name')[1])
        for node in findall(net, 'node'):
            pads[(unq(find(node, 'ref')[1]), unq(find(node, 'pin')[1]))] = name
    stamps = {}
    for comp in findall(find(tree, 'components'), 'comp'):
        ref = unq(find(comp, 'ref')[1])
        ts = find(comp, 'tstamps')
        stamps[ref] = unq(ts[1]) if ts else None
    return pads, stamps


def write_project():
    pro = {
        'board': {
            'design_settings': {
                'defaults': {'board_outline_line_width': 0.1, 'copper_line_width': 0.2,
                             'silk_line_width': 0.12, 'silk_text_size_h': 0.8, 'silk_text_size_v': 0.8,
                             'silk_text_thickness': 0.12},
                'rules': {'min_clearance': 0.15, 'min_track_width': 0.2, 'min_via_diameter': 0.6,
                          'min_through_hole_diameter': 0.3, 'min_via_annular_width': 0.13,
                          'min_hole_clearance': 0.25, 'min_hole_to_hole': 0.25,
                          'min_copper_edge_clearance': 0.3, 'min_silk_clearance': 0.0,
                          'solder_mask_to_copper_clearance': 0.0, 'min_connection': 0.15},
                'rule_severities': {'silk_overlap': 'warning', 'silk_over_copper': 'warning',
                                    'silk_edge_clearance': 'warning', 'lib_footprint_issues': 'warning',
                                    'lib_footprint_mismatch': 'warning', 'footprint_type_mismatch': 'ignore',
                                    'text_height': 'warning', 'text_thickness': 'warning'},
                'track_widths': [0.0, 0.25, 0.5], 'via_dimensions': [{'diameter': 0.0, 'drill': 0.0},
                                                                      {'diameter': 0.6, 'drill': 0.3}],
            },
        },
        'meta': {'filename': NAME + '.kicad_pro', 'version': 3},
        'net_settings': {
            'classes': [
                {'name': 'Default', 'clearance': 0.15, 'track_width': 0.25, 'via_diameter': 0.6,
                 'via_drill': 0.3, 'diff_pair_width': 0.2, 'diff_pair_gap': 0.25,
                 'microvia_diameter': 0.3, 'microvia_drill': 0.1, 'wire_width': 6, 'bus_width': 12,
                 'line_style': 0, 'schematic_color': 'rgba(0, 0, 0, 0.000)', 'pcb_color': 'rgba(0, 0, 0, 0.000)',
                 'priority': 2147483647},
                {'name': 'Power', 'clearance': 0.2, 'track_width': 0.5, 'via_diameter': 0.6,
                 'via_drill': 0.3, 'diff_pair_width': 0.2, 'diff_pair_gap': 0.25,
                 'microvia_diameter': 0.3, 'microvia_drill': 0.1, 'wire_width': 6, 'bus_width': 12,
                 'line_style': 0, 'schematic_color': 'rgba(0, 0, 0, 0.000)', 'pcb_color': 'rgba(0, 0, 0, 0.000)',
                 'priority': 0},
            ],
            'meta': {'version': 4},
            'net_colors': None,
            'netclass_assignments': None,
            'netclass_patterns': [{'netclass': 'Power', 'pattern': n if n in ('GND', '+3V3') else '/' + n}
                                  for n in sorted(design.POWER_NETS)],
        },
        'erc': {'erc_exclusions': [], 'meta': {'version': 0},
                'rule_severities': {}},
        'schematic': {'meta': {'version': 1}},
        'sheets': [[uid('root-sheet'), 'Root']],
        'text_variables': {},
        'libraries': {'pinned_footprint_libs': [], 'pinned_symbol_libs': []},
    }
    return pro


def write_images():
    """Pictures for the README (committed, so people see the board without KiCad)."""
    img = os.path.join(HERE, 'images')
    os.makedirs(img, exist_ok=True)
    pcbfile = os.path.join(HERE, NAME + '.kicad_pcb')
    for side in ('top', 'bottom'):
        subprocess.run(['kicad-cli', 'pcb', 'render', '-o', os.path.join(img, 'board-%s.png' % side),
                        '--side', side, '--width', '1600', '--height', '800', '--zoom', '1.9',
                        '--quality', 'high', pcbfile], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    subprocess.run(['kicad-cli', 'pcb', 'export', 'svg', '-o', os.path.join(img, 'board-top.svg'),
                    '--mode-single', '--page-size-mode', '2', '--exclude-drawing-sheet',
                    '-l', 'F.Cu,F.Mask,F.SilkS,Edge.Cuts', pcbfile], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(['kicad-cli', 'sch', 'export', 'svg', '-o', img, '--exclude-drawing-sheet',
                    os.path.join(HERE, NAME + '.kicad_sch')], check=True, stdout=subprocess.DEVNULL)
    os.replace(os.path.join(img, NAME + '.svg'), os.path.join(img, 'schematic.svg'))


if __name__ == '__main__':
    import pcb  # noqa: E402  (board generation lives in pcb.py)
    write_library()
    write_schematic()
    pro = write_project()
    with open(os.path.join(HERE, NAME + '.kicad_pro'), 'w') as f:
        json.dump(pro, f, indent=2)
        f.write('\n')
    os.makedirs(os.path.join(HERE, 'build'), exist_ok=True)
    netpath = os.path.join(HERE, 'build', NAME + '.net')
    pads, stamps = export_netlist(netpath)
    # the schematic must say exactly what design.py says (no accidental label contacts)
    for p in design.PARTS:
        for pin, net in p['pins'].items():
            got = pads.get((p['ref'], pin))
            want = net if net in ('GND', '+3V3') else '/' + net if net else None
            if (want is None and not (got or '').startswith('unconnected')) or (want and got != want):
                raise SystemExit('netlist mismatch %s.%s: schematic %r, design %r' % (p['ref'], pin, got, want))
    failed = pcb.write_board(pads, stamps, pro)
    if not os.environ.get('MEP_NO_IMAGES'):
        write_images()
    print('generated', NAME, '(UNROUTED: %s)' % ', '.join(failed) if failed else '')
