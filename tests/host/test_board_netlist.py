# The firmware's board profile 'mepdrawer' against the KiCad schematic of the MEP drawer PCB
# (hardware/kicad). The netlist is exported by kicad-cli into a temp dir and followed pin by pin:
# GPIO -> MAX3232 -> MEP connector, GPIO -> load switch -> MAX3232 VCC, GPIO -> LED, GPIO <- BOOT.
# kicad-cli is required: CI installs it with hardware/kicad/install-kicad.sh. Without it this
# test FAILS on purpose (a skipped hardware check would go unnoticed).
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'firmware'))
from drivers import boards  # noqa: E402

KICAD = os.path.join(ROOT, 'hardware', 'kicad')
SCH = os.path.join(KICAD, 'mep-drawer.kicad_sch')
ESP_MODULE = 'ESP32-S3-MINI-1'
GND = 'GND'
STRAPPING = {0, 3, 45, 46}          # ESP32-S3 datasheet, strapping pins
USB_PINS = {19, 20}                 # native USB D-/D+
FLASH_PSRAM = set(range(26, 33))    # SPI0/1 to the in-package flash and PSRAM (IO26: PSRAM CS)


# ---------------------------------------------------------------- netlist reader

def _parse(text):
    stack = [[]]
    for tok in re.findall(r'\(|\)|"(?:[^"\\]|\\.)*"|[^\s()"]+', text):
        if tok == '(':
            stack.append([])
        elif tok == ')':
            node = stack.pop()
            stack[-1].append(node)
        else:
            stack[-1].append(tok[1:-1].replace('\\"', '"') if tok.startswith('"') else tok)
    return stack[0][0]


def _kids(node, key):
    return [x for x in node if isinstance(x, list) and x and x[0] == key]


def _val(node, key):
    k = _kids(node, key)
    return k[0][1] if k else None


class Netlist:
    def __init__(self, text):
        tree = _parse(text)
        self.parts = {}          # ref -> {'value', 'part', 'lib'}
        for comp in _kids(_kids(tree, 'components')[0], 'comp'):
            src = _kids(comp, 'libsource')[0]
            self.parts[_val(comp, 'ref')] = {'value': _val(comp, 'value'), 'part': _val(src, 'part'),
                                             'lib': _val(src, 'lib')}
        self.nets = {}           # net name -> [(ref, pin number, pin function)]
        self.pin_net = {}        # (ref, pin number) -> net name
        for net in _kids(_kids(tree, 'nets')[0], 'net'):
            name = _val(net, 'name')
            nodes = [(_val(n, 'ref'), _val(n, 'pin'), _val(n, 'pinfunction') or '') for n in _kids(net, 'node')]
            self.nets[name] = nodes
            for ref, pin, _ in nodes:
                self.pin_net[(ref, pin)] = name

    def refs(self, part):
        return [r for r, p in self.parts.items() if p['part'] == part]

    def pin_by_function(self, ref, function):
        hits = sorted({(pin, net) for net, nodes in self.nets.items() for r, pin, f in nodes
                       if r == ref and f.split('/')[0] == function})
        assert hits, '%s has no pin named %s' % (ref, function)
        assert len({n for _, n in hits}) == 1, '%s pins named %s are on several nets' % (ref, function)
        return hits[0]

    def net_of(self, ref, function):
        return self.pin_by_function(ref, function)[1]

    def members(self, net):
        return self.nets[net]

    def others(self, net, ref):
        return [(r, pin, f) for r, pin, f in self.nets[net] if r != ref]

    def other_side(self, ref, pin):
        """The net on the other pin of a two-pin part."""
        pins = [(p, n) for (r, p), n in self.pin_net.items() if r == ref and p != pin]
        assert len(pins) == 1, '%s is not a two-pin part' % ref
        return pins[0][1]


def _ohms(value):
    m = re.match(r'^([0-9.]+)\s*([kKmM]?)', value.replace('R', '.') if re.match(r'^[0-9]+R[0-9]*$', value) else value)
    assert m, 'resistor value %r' % value
    return float(m.group(1)) * {'': 1, 'k': 1e3, 'K': 1e3, 'm': 1e-3, 'M': 1e6}[m.group(2)]


def _is(netlist, ref, part_prefix):
    return netlist.parts[ref]['part'].startswith(part_prefix)


@pytest.fixture(scope='module')
def netlist(tmp_path_factory):
    cli = shutil.which('kicad-cli')
    if not cli:
        pytest.fail('kicad-cli not found: install KiCad 9 with hardware/kicad/install-kicad.sh '
                    '(CI does); the board netlist check cannot run without it')
    out = tmp_path_factory.mktemp('kicad') / 'mep-drawer.net'
    r = subprocess.run([cli, 'sch', 'export', 'netlist', '--format', 'kicadsexpr', '-o', str(out), SCH],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and out.exists(), 'kicad-cli netlist export failed:\n%s%s' % (r.stdout, r.stderr)
    return Netlist(out.read_text())


@pytest.fixture(scope='module')
def profile():
    return boards.get('mepdrawer')


@pytest.fixture(scope='module')
def esp(netlist):
    refs = netlist.refs(ESP_MODULE)
    assert len(refs) == 1, 'expected one %s on the board, found %r' % (ESP_MODULE, refs)
    return refs[0]


@pytest.fixture(scope='module')
def xcvr(netlist):
    refs = [r for r, p in netlist.parts.items() if re.match(r'(MAX|ICL|SP|RS)3232', p['part'] or '')]
    assert len(refs) == 1, 'expected one MAX3232-class transceiver, found %r' % refs
    return refs[0]


@pytest.fixture(scope='module')
def mep(netlist):
    """The MEP connector: the 2x3 header."""
    refs = [r for r, p in netlist.parts.items() if p['part'] == 'Conn_02x03_Odd_Even']
    assert len(refs) == 1, refs
    return refs[0]


def gpio_net(netlist, esp, n):
    return netlist.net_of(esp, 'IO%d' % n)


# ---------------------------------------------------------------- tests

def test_profile_is_for_the_s3_module_with_quad_psram(profile, esp, netlist):
    assert profile['chip'] == 'esp32s3'
    assert netlist.parts[esp]['lib'] == 'MEP', 'the module symbol comes from the project library'
    # -N4R2: 4 MB flash and 2 MB quad PSRAM, which the stock ESP32_GENERIC_S3 image brings up
    assert netlist.parts[esp]['value'] == 'ESP32-S3-MINI-1-N4R2'


def test_profile_pins_avoid_strapping_usb_and_psram(profile):
    used = [profile[k] for k in ('rx', 'tx', 'enable', 'driver_supply', 'led')]
    assert not set(used) & (STRAPPING | USB_PINS | FLASH_PSRAM), used
    assert not set(used) & set(range(33, 38)), 'IO33-IO37 are the octal PSRAM bus on R8 modules'
    assert profile['boot_button'] == 0, 'GPIO0 is the ROM download strap: the BOOT button'
    assert len(set(used + [profile['boot_button']])) == 6, 'pins must be distinct'


def test_rx_comes_from_the_meter(profile, netlist, esp, xcvr, mep):
    net = gpio_net(netlist, esp, profile['rx'])
    outs = [f for r, _, f in netlist.others(net, esp) if r == xcvr]
    assert len(outs) == 1 and re.match(r'R\dOUT$', outs[0]), 'IO%d must be driven by a receiver output, has %r' % (
        profile['rx'], netlist.members(net))
    rin = netlist.net_of(xcvr, outs[0].replace('OUT', 'IN'))
    assert (mep, '2', 'Pin_2') in netlist.members(rin) or any(
        r == mep and p == '2' for r, p, _ in netlist.members(rin)), 'receiver input must be MEP pin 2 (RXD)'


def test_tx_goes_to_the_meter(profile, netlist, esp, xcvr, mep):
    net = gpio_net(netlist, esp, profile['tx'])
    ins = [f for r, _, f in netlist.others(net, esp) if r == xcvr]
    assert len(ins) == 1 and re.match(r'T\dIN$', ins[0]), 'IO%d must drive a driver input, has %r' % (
        profile['tx'], netlist.members(net))
    tout = netlist.net_of(xcvr, ins[0].replace('IN', 'OUT'))
    assert any(r == mep and p == '5' for r, p, _ in netlist.members(tout)), 'driver output must be MEP pin 5 (TXD)'


def test_enable_through_driver_and_diode(profile, netlist, esp, xcvr, mep):
    assert profile['enable_active'] == 0, 'the RS-232 driver inverts: GPIO low = ENABLE asserted'
    net = gpio_net(netlist, esp, profile['enable'])
    ins = [f for r, _, f in netlist.others(net, esp) if r == xcvr]
    assert len(ins) == 1 and re.match(r'T\dIN$', ins[0]), netlist.members(net)
    tout = netlist.net_of(xcvr, ins[0].replace('IN', 'OUT'))
    diodes = [(r, p, f) for r, p, f in netlist.others(tout, xcvr) if netlist.parts[r]['part'] in ('D', 'D_Schottky')]
    assert len(diodes) == 1 and diodes[0][2] == 'A', 'driver output must feed a diode anode: %r' % netlist.members(tout)
    # follow the cathode, through at most one series resistor, to MEP pin 3
    d = diodes[0][0]
    net = netlist.other_side(d, diodes[0][1])
    for _ in range(2):
        if any(r == mep and p == '3' for r, p, _ in netlist.members(net)):
            break
        res = [(r, p) for r, p, _ in netlist.members(net) if netlist.parts[r]['part'] == 'R']
        assert len(res) == 1, netlist.members(net)
        net = netlist.other_side(*res[0])
    assert any(r == mep and p == '3' for r, p, _ in netlist.members(net)), 'ENABLE must reach MEP pin 3'


def test_driver_supply_switch(profile, netlist, esp, xcvr):
    # high = transceiver powered (firmware/drivers/esp32.py writes 1 to power it); pulled down = off
    n = profile['driver_supply']
    assert n is not None
    net = gpio_net(netlist, esp, n)
    switch = [(r, f) for r, _, f in netlist.others(net, esp) if f == 'ON']
    assert len(switch) == 1, 'IO%d must drive a load switch ON input: %r' % (n, netlist.members(net))
    sw = switch[0][0]
    assert netlist.net_of(sw, 'VOUT') == netlist.net_of(xcvr, 'VCC'), 'load switch must feed the MAX3232 VCC'
    assert netlist.net_of(sw, 'VIN') == '+3V3'
    pulls = [r for r, p, _ in netlist.others(net, esp) if netlist.parts[r]['part'] == 'R'
             and netlist.other_side(r, p) == GND]
    assert len(pulls) == 1, 'the switch input needs a pull-down so the transceiver stays off while the GPIO floats'
    # the ESP32-S3 may enable its ~45k weak pull-up on the pin around reset: the pull-down must
    # hold the ON input below 0.4 V against it (3.3 V x R / (R + 45k))
    r = _ohms(netlist.parts[pulls[0]]['value'])
    assert 3.3 * r / (r + 45e3) < 0.4, '%s %s loses against the internal pull-up' % (pulls[0], r)


def test_enable_is_off_while_the_gpio_floats(profile, netlist, esp, xcvr):
    # ENABLE is asserted by GPIO low (the driver inverts): a pull-up on the driver input keeps it
    # deasserted from power-on until the firmware drives the pin, and pulls to the transceiver's
    # own (switched) supply so it cannot feed the unpowered transceiver
    net = gpio_net(netlist, esp, profile['enable'])
    ups = [r for r, p, _ in netlist.others(net, esp) if netlist.parts[r]['part'] == 'R'
           and netlist.other_side(r, p) in (netlist.net_of(xcvr, 'VCC'), '+3V3')]
    assert ups, 'IO%d needs a pull-up (ENABLE off while the GPIO floats): %r' % (
        profile['enable'], netlist.members(net))
    assert netlist.other_side(ups[0], [p for r, p, _ in netlist.members(net) if r == ups[0]][0]) == \
        netlist.net_of(xcvr, 'VCC'), 'pull-up to the switched transceiver supply'


def test_status_led(profile, netlist, esp):
    assert profile['led_active'] == 1
    net = gpio_net(netlist, esp, profile['led'])
    res = [(r, p) for r, p, _ in netlist.others(net, esp) if netlist.parts[r]['part'] == 'R']
    assert len(res) == 1, netlist.members(net)
    anode_net = netlist.other_side(*res[0])
    leds = [(r, p, f) for r, p, f in netlist.members(anode_net) if netlist.parts[r]['part'] == 'LED']
    assert len(leds) == 1 and leds[0][2] == 'A', 'series resistor must go to an LED anode'
    assert netlist.other_side(leds[0][0], leds[0][1]) == GND, 'LED cathode on GND: active high'


def test_boot_button(profile, netlist, esp):
    assert profile['safe_active'] == 0
    net = gpio_net(netlist, esp, profile['boot_button'])
    switches = [(r, p) for r, p, _ in netlist.others(net, esp) if netlist.parts[r]['part'] == 'SW_Push']
    assert len(switches) == 1, netlist.members(net)
    assert netlist.other_side(*switches[0]) == GND, 'BOOT button pulls the pin low: active low'
    pulls = [r for r, p, _ in netlist.others(net, esp) if netlist.parts[r]['part'] == 'R'
             and netlist.other_side(r, p) == '+3V3']
    assert pulls, 'GPIO0 needs a pull-up (boot from flash when the button is not pressed)'


def test_strapping_psram_and_usb(netlist, esp):
    # IO3 (JTAG source), IO45 (VDD_SPI voltage: high would give the 3.3 V flash 1.8 V) and
    # IO46 (boot mode, ROM log) stay open: their internal pulls select the defaults. IO26 is
    # the in-package PSRAM's chip select on the -N4R2: nothing else may touch it.
    for n in (3, 45, 46, 26):
        net = gpio_net(netlist, esp, n)
        assert not netlist.others(net, esp), 'IO%d must stay unconnected: %r' % (n, netlist.members(net))
    usb = netlist.refs('USB_C_Receptacle_USB2.0_16P')
    assert len(usb) == 1
    for gpio, line in ((19, 'D-'), (20, 'D+')):
        net = gpio_net(netlist, esp, gpio)
        # straight to the receptacle, or through one pass-through line of an ESD array
        # (its two pins of the same name, e.g. USBLC6 I/O1 pins 1 and 6)
        esd = [(r, f) for r, _, f in netlist.others(net, esp) if r not in usb]
        if esd:
            assert len(esd) == 1, netlist.members(net)
            r, f = esd[0]
            nets = {n for (rr, p), n in netlist.pin_net.items() if rr == r
                    and any(x == p and ff == f for _, x, ff in netlist.members(n) if _ == r)}
            assert len(nets) == 2, 'ESD part %s line %s must pass through' % (r, f)
            net = (nets - {net}).pop()
        assert {f for r, _, f in netlist.members(net) if r == usb[0]} == {line}, netlist.members(net)


def test_mep_connector_pinout(netlist, mep):
    assert netlist.pin_net[(mep, '1')] == GND
    assert netlist.pin_net[(mep, '6')].startswith('unconnected'), 'pin 6 is not connected'
    # pin 4 (+24 V) reaches the buck input only through a diode (reverse polarity, no USB back-feed)
    pwr = netlist.pin_net[(mep, '4')]
    diodes = [(r, p, f) for r, p, f in netlist.members(pwr) if r != mep]
    assert len(diodes) == 1 and netlist.parts[diodes[0][0]]['part'].startswith('D') and diodes[0][2] == 'A'


# ---------------------------------------------------------------- board file checks (check.sh)

def _board_check(tmp_path, edit=None):
    sys.path.insert(0, KICAD)
    import board_check
    text = open(os.path.join(KICAD, 'mep-drawer.kicad_pcb')).read()
    if edit:
        text = edit(text)
    path = tmp_path / 'board.kicad_pcb'
    path.write_text(text)
    return board_check.main(str(path))


def test_board_passes_its_mechanical_checks(tmp_path, capsys):
    assert _board_check(tmp_path) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert 'in SMD pads: 0' in out and 'outline: 70.00 x 28.00 mm' in out and 'M3 holes: 2' in out


def test_board_check_catches_a_via_in_a_pad(tmp_path, capsys):
    # a via on the module's 3V3 pad (U1 pin 3): the rev A fault
    sys.path.insert(0, KICAD)
    import board_check
    from sexpr import parse, findall, find, unq
    board = parse(open(os.path.join(KICAD, 'mep-drawer.kicad_pcb')).read())
    u1 = next(fp for fp in findall(board, 'footprint')
              if any(unq(p[1]) == 'Reference' and unq(p[2]) == 'U1' for p in findall(fp, 'property')))
    pad = next(p for p in board_check.pads_of(u1) if p['number'] == '3')
    via = '\n\t(via (at %.3f %.3f) (size 0.6) (drill 0.3) (layers "F.Cu" "B.Cu") (net 0))\n' % (pad['x'], pad['y'] + 0.3)
    assert _board_check(tmp_path, lambda t: t.rstrip()[:-1] + via + ')\n') == 1
    assert 'via(s) in SMD pads: U1.3' in capsys.readouterr().out


def test_board_check_catches_a_wider_outline(tmp_path, capsys):
    def widen(text):
        assert '(start 158 99)\n\t\t(end 158 125)' in text
        return text.replace('(start 158 99)\n\t\t(end 158 125)', '(start 159 99)\n\t\t(end 159 125)')
    assert _board_check(tmp_path, widen) == 1
    assert 'outline 71.00 x 28.00 mm is outside 70 x 28 mm' in capsys.readouterr().out
