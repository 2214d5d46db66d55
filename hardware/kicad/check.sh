#!/bin/sh
# Check the MEP drawer PCB with kicad-cli and export the manufacturing files.
#
#   hardware/kicad/check.sh            (from anywhere; KiCad 9: hardware/kicad/install-kicad.sh)
#
# 1. ERC on the schematic: fails on any error (warnings are reported).
# 2. DRC on the board with schematic parity: fails on any error, any unconnected item or any
#    parity issue (warnings are reported).
# 3. Board checks KiCad's DRC does not make (board_check.py): no via in an SMD pad, outline within
#    70 x 28 mm, the two M3 holes and J1 where the original has them, part sides and heights.
# 4. Exports into hardware/kicad/build/: netlist, Gerbers + drill files (and a zip of them for
#    the fab), BOM (CSV with Manufacturer and MPN columns), placement files, board images, and
#    the 1:1 fit-test PDF (outline, holes, J1, part outlines and heights).
# Exit status is non-zero when a check fails or an export is missing.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
NAME=mep-drawer
SCH="$HERE/$NAME.kicad_sch"
PCB="$HERE/$NAME.kicad_pcb"
OUT="$HERE/build"
PY=$(command -v python3)

if ! command -v kicad-cli >/dev/null 2>&1; then
    echo "check.sh: kicad-cli not found; install KiCad 9 with hardware/kicad/install-kicad.sh" >&2
    exit 2
fi
VERSION=$(kicad-cli version | head -n1)
case "$VERSION" in
    9.*) ;;
    *) echo "check.sh: kicad-cli $VERSION found, KiCad 9 needed (hardware/kicad/install-kicad.sh)" >&2; exit 2 ;;
esac

rm -rf "$OUT"
mkdir -p "$OUT/gerbers"
# kicad-cli wants a writable home for its settings; keep CI runs self-contained
export HOME="${HOME:-$OUT}"

q() { "$@" >"$OUT/kicad-cli.log" 2>&1 || { cat "$OUT/kicad-cli.log" >&2; echo "check.sh: failed: $*" >&2; exit 1; }; }

# ---- ERC -----------------------------------------------------------------------------------
q kicad-cli sch erc --severity-all --format json --units mm -o "$OUT/erc.json" "$SCH"
kicad-cli sch erc --severity-all --format report --units mm -o "$OUT/erc.rpt" "$SCH" >/dev/null 2>&1 || true

# ---- DRC with schematic parity -------------------------------------------------------------
q kicad-cli pcb drc --schematic-parity --severity-all --format json --units mm -o "$OUT/drc.json" "$PCB"
kicad-cli pcb drc --schematic-parity --severity-all --format report --units mm -o "$OUT/drc.rpt" "$PCB" >/dev/null 2>&1 || true

# ---- exports ---------------------------------------------------------------------------------
q kicad-cli sch export netlist --format kicadsexpr -o "$OUT/$NAME.net" "$SCH"
q kicad-cli pcb export gerbers -o "$OUT/gerbers/" \
    --layers F.Cu,B.Cu,F.Paste,B.Paste,F.SilkS,B.SilkS,F.Mask,B.Mask,Edge.Cuts "$PCB"
q kicad-cli pcb export drill -o "$OUT/gerbers/" --format excellon --excellon-units mm \
    --generate-map --map-format gerberx2 "$PCB"
q kicad-cli sch export bom -o "$OUT/$NAME-bom.csv" \
    --fields 'Reference,Value,Footprint,${QUANTITY},Manufacturer,MPN' \
    --labels 'Designator,Value,Footprint,Quantity,Manufacturer,MPN' \
    --group-by 'Value,Footprint,MPN' --ref-range-delimiter '' "$SCH"
q kicad-cli pcb export pos -o "$OUT/$NAME-pos.csv" --format csv --units mm --side both \
    --use-drill-file-origin "$PCB"
q kicad-cli pcb export svg -o "$OUT/$NAME-top.svg" --mode-single --page-size-mode 2 \
    --exclude-drawing-sheet -l F.Cu,F.Mask,F.SilkS,Edge.Cuts "$PCB"
q kicad-cli pcb export svg -o "$OUT/$NAME-bottom.svg" --mode-single --page-size-mode 2 --mirror \
    --exclude-drawing-sheet -l B.Cu,B.Mask,B.SilkS,Edge.Cuts "$PCB"
q kicad-cli sch export svg -o "$OUT/" --exclude-drawing-sheet "$SCH"
# 1:1 fit-test print: outline, holes, J1, every part's outline and height (User.Drawings), pads
q kicad-cli pcb export pdf -o "$OUT/$NAME-fit-1to1.pdf" --mode-single --black-and-white \
    --drill-shape-opt 2 -l Edge.Cuts,User.Drawings "$PCB"
# vias in SMD pads, outline 70 x 28 mm, M3 holes, J1 position, part sides and heights
if "$PY" "$HERE/board_check.py" "$PCB" >"$OUT/board_check.txt" 2>&1; then BOARD=ok; else BOARD=failed; fi
# 3D render: needs an OpenGL context; optional (the SVGs above are the required images)
if kicad-cli pcb render -o "$OUT/$NAME-render.png" --width 1600 --height 900 --zoom 1.3 "$PCB" \
        >"$OUT/render.log" 2>&1; then RENDER=yes; else RENDER="no (see build/render.log)"; fi

# ---- evaluate ------------------------------------------------------------------------------
KVER="$VERSION" "$PY" - "$OUT" "$NAME" "$RENDER" "$BOARD" <<'EOF'
import csv, glob, json, os, sys, zipfile
out, name, render, board = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
fail = []
if board != 'ok':
    fail.append('board checks (vias in pads / outline / holes / heights): see below')

erc = json.load(open(os.path.join(out, 'erc.json')))
ev = [v for s in erc.get('sheets', []) for v in s.get('violations', [])]
erc_err = sum(1 for v in ev if v.get('severity') == 'error')
erc_warn = sum(1 for v in ev if v.get('severity') == 'warning')
if erc_err:
    fail.append('ERC: %d error(s)' % erc_err)

drc = json.load(open(os.path.join(out, 'drc.json')))
dv = drc.get('violations', [])
drc_err = sum(1 for v in dv if v.get('severity') == 'error')
drc_warn = sum(1 for v in dv if v.get('severity') == 'warning')
unconn = len(drc.get('unconnected_items', []))
parity = len(drc.get('schematic_parity', []))
parity_err = sum(1 for v in drc.get('schematic_parity', []) if v.get('severity') == 'error')
if drc_err:
    fail.append('DRC: %d error(s)' % drc_err)
if unconn:
    fail.append('DRC: %d unconnected item(s)' % unconn)
if parity:
    fail.append('DRC: %d schematic parity issue(s)' % parity)
for v in (x for x in ev + dv if x.get('severity') == 'error'):
    print('  error: %s: %s' % (v.get('type'), v.get('description')), file=sys.stderr)
    for it in v.get('items', [])[:2]:
        print('     %s' % it.get('description'), file=sys.stderr)
warn_types = {}
for v in ev + dv:
    if v.get('severity') == 'warning':
        warn_types[v.get('type')] = warn_types.get(v.get('type'), 0) + 1

gerbers = sorted(glob.glob(os.path.join(out, 'gerbers', '*')))
need = ['-F_Cu.gtl', '-B_Cu.gbl', '-F_Mask.gts', '-B_Mask.gbs', '-F_Silkscreen.gto', '-Edge_Cuts.gm1']
for suffix in need:
    if not any(g.endswith(suffix) for g in gerbers):
        fail.append('Gerber %s missing' % suffix)
drills = [g for g in gerbers if g.endswith('.drl')]
if not drills:
    fail.append('drill file missing')
with zipfile.ZipFile(os.path.join(out, name + '-gerbers.zip'), 'w', zipfile.ZIP_DEFLATED) as z:
    for g in gerbers:
        z.write(g, os.path.basename(g))

rows = list(csv.DictReader(open(os.path.join(out, name + '-bom.csv'), newline='')))
if not rows or 'MPN' not in rows[0]:
    fail.append('BOM without an MPN column')
no_mpn = [r['Designator'] for r in rows if not r.get('MPN')]
if no_mpn:
    fail.append('BOM lines without MPN: %s' % ', '.join(no_mpn))
parts = sum(int(r['Quantity']) for r in rows)
pos = [l for l in open(os.path.join(out, name + '-pos.csv')) if l.strip()][1:]
for f in (name + '-top.svg', name + '-bottom.svg', name + '.net', name + '-fit-1to1.pdf'):
    if not os.path.getsize(os.path.join(out, f)):
        fail.append('%s empty' % f)

print('MEP drawer PCB check (KiCad %s)' % os.environ.get('KVER', ''))
print('  ERC: %d errors, %d warnings' % (erc_err, erc_warn))
print('  DRC: %d errors, %d warnings, %d unconnected items, %d schematic parity issues'
      % (drc_err, drc_warn, unconn, parity))
if warn_types:
    print('  warnings by type: ' + ', '.join('%s %d' % kv for kv in sorted(warn_types.items())))
print('  exports: %d Gerber/drill files (+ %s-gerbers.zip), BOM %d lines / %d parts, %d placements'
      % (len(gerbers), name, len(rows), parts, len(pos)))
print('  board (board_check.py):')
print(open(os.path.join(out, 'board_check.txt')).read().rstrip())
print('  images: %s-top.svg, %s-bottom.svg, schematic SVG, %s-fit-1to1.pdf, 3D render: %s' % (name, name, name, render))
print('  reports: build/erc.rpt, build/drc.rpt')
if fail:
    print('FAILED: ' + '; '.join(fail))
    sys.exit(1)
print('OK')
EOF
