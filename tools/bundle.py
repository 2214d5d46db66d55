#!/usr/bin/env python3
"""Build (or check) a signed OTA bundle for the web update page.

  python tools/bundle.py BUILD_DIR --device esp32 --key-file KEY -o mep-esp32.bin
  python tools/bundle.py --verify mep-esp32.bin --device esp32 --key-file KEY

BUILD_DIR is what `tools/flash.py --dry-run` writes (build/flash/<chip>/). The bundle holds
every file of it except boot.py and main.py (only a cable may replace those: they carry the
rollback) and dot-files, plus a release.py that names the bundle's version (tools/version.py). The format is described at the top of firmware/system/ota.py, whose code
(header line, manifest checks, HMAC) is used here too.

The OTA key is the hex string of the device's `ota_key` setting. It is read from a file
(--key-file) or typed at a prompt, never taken from the command line or the environment.
"""
import argparse
import binascii
import getpass
import hashlib
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'firmware'))

from system import ota  # noqa: E402  (firmware/system/ota.py: one definition of the format)
sys.path.insert(0, os.path.join(ROOT, 'tools'))
import version as release_version  # noqa: E402  (tools/version.py)

DEVICES = ('mep', 'esp32', 'esp32c3', 'esp32s3', 'host')   # host: a virtual board (tools/vboard.py)
RELEASE = 'release.py'      # the release's version, as firmware/system/version.py reads it


class BundleError(Exception):
    pass


def parse_key(text):
    t = text.strip()
    try:
        key = binascii.unhexlify(t)
    except (binascii.Error, ValueError):
        raise BundleError('the OTA key must be hex digits (the ota_key setting of the device)')
    if len(key) < 16:
        raise BundleError('the OTA key is too short: at least 32 hex digits')
    return key


def read_key(path=None, prompt=getpass.getpass):
    if path:
        try:
            with open(path) as f:
                return parse_key(f.read())
        except OSError as e:
            raise BundleError('cannot read the key file %s: %s' % (path, e.strerror))
    return parse_key(prompt('OTA key (hex, not shown): '))


def collect(build_dir):
    """[(bundle path, local file)] for every file of a flash build folder that OTA may carry."""
    out = []
    for dirpath, dirnames, filenames in os.walk(build_dir):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith('.'))
        for name in sorted(filenames):
            rel = os.path.relpath(os.path.join(dirpath, name), build_dir).replace(os.sep, '/')
            if name.startswith('.') or rel in ota.PROTECTED or ota.check_path(rel):
                continue
            out.append((rel, os.path.join(dirpath, name)))
    if not out:
        raise BundleError('nothing to bundle in %s' % build_dir)
    return out


# Modules of earlier releases, before drivers/, storage/, net/ and system/: a bundle removes
# them (tools/flash.py too), so no old module stays to be imported instead of a new one.
RETIRED = ('atomic', 'boards', 'cfgpw', 'cfgschema', 'config', 'fsops', 'ha', 'hadisc',
           'history', 'history_load', 'hmac_sha256', 'hw_esp32', 'legacy', 'metrics', 'mqtt',
           'net', 'ota', 'ring', 'safemode', 'smtp', 'store', 'supervisor', 'tcp', 'tz',
           'mep/link', 'mep/tablesx')
# umqtt.simple where earlier versions of tools/flash.py had mip install it (1.8.0, behind the
# image's frozen copy): the bundle brings the pinned one as umqtt/simple.mpy (tools/flash.py)
OLD_UMQTT = ('lib/umqtt/simple.mpy', 'lib/umqtt/simple.py')


def stale(files):
    """What a bundle of `files` removes from the board: the modules of RETIRED, and the other
    form of every module it brings (a stale app.py is imported before the new app.mpy; a
    stale release.mpy would do no harm, but goes too), and OLD_UMQTT."""
    bundled = set(rel for rel, _l in files)
    out = set(OLD_UMQTT)
    for m in RETIRED:
        out.add(m + '.py')
        out.add(m + '.mpy')
    for rel in bundled:
        if rel.endswith('.mpy'):
            out.add(rel[:-4] + '.py')
        elif rel.endswith('.py'):
            out.add(rel[:-3] + '.mpy')
    return sorted(p for p in out if p not in bundled and not ota.check_path(p))


def _sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(65536), b''):
            h.update(block)
    return h.hexdigest()


def manifest_bytes(files, device, version, device_id=None, created=None, remove=()):
    if device not in DEVICES:
        raise BundleError('device must be one of %s' % ', '.join(DEVICES))
    entries = []
    for rel, local in files:
        err = ota.check_path(rel)
        if err:
            raise BundleError(err)
        entries.append({'path': rel, 'size': os.path.getsize(local), 'sha256': _sha256(local)})
    m = {'format': ota.FORMAT, 'device': device, 'version': str(version),
         'created': int(time.time() if created is None else created), 'files': entries}
    if device_id:
        m['device_id'] = device_id
    bundled = set(rel for rel, _l in files)
    rm = sorted(set(p for p in remove if p not in bundled))
    for p in rm:
        err = ota.check_path(p)
        if err:
            raise BundleError('cannot remove: ' + err)
    if rm:
        m['remove'] = rm
    raw = json.dumps(m, separators=(',', ':'), sort_keys=True).encode()
    if len(raw) > ota.MAX_MANIFEST:
        raise BundleError('manifest too large (%d bytes, max %d)' % (len(raw), ota.MAX_MANIFEST))
    return raw


def write_bundle(out_path, files, key, device, version, device_id=None, created=None,
                 remove=None):
    """Write the bundle; returns its manifest dict. Files are streamed, never held whole.
    The bundle's release.py says `version` (any release.py/.mpy among `files` is left out).
    remove: files of earlier releases the device deletes (kept for a rollback); default
    stale(files)."""
    try:
        rel_src = release_version.release_source(version)
    except release_version.VersionError as e:
        raise BundleError(str(e))
    rel_tmp = out_path + '.release.py'
    with open(rel_tmp, 'w', encoding='utf-8') as f:
        f.write(rel_src)
    try:
        files = [f for f in files if f[0] not in (RELEASE, RELEASE[:-3] + '.mpy')]
        files.append((RELEASE, rel_tmp))
        return _write(out_path, files, key, device, version, device_id, created,
                      stale(files) if remove is None else remove)
    finally:
        os.remove(rel_tmp)


def _write(out_path, files, key, device, version, device_id, created, remove):
    raw = manifest_bytes(files, device, version, device_id, created, remove)
    tmp = out_path + '.part'
    with open(tmp, 'wb') as out:
        out.write(ota.header_line(raw, key))
        out.write(raw)
        for _rel, local in files:
            with open(local, 'rb') as f:
                for block in iter(lambda: f.read(65536), b''):
                    out.write(block)
    os.replace(tmp, out_path)
    return json.loads(raw)


def verify(path, key, chip, device_id=None, chunk=4096):
    """Feed a bundle through the device's own receiver in a temp dir. Returns its summary."""
    with tempfile.TemporaryDirectory() as root:
        rx = ota.OtaReceiver(root, key, chip, device_id)
        with open(path, 'rb') as f:
            for block in iter(lambda: f.read(chunk), b''):
                rx.feed(block)
        return rx.finish()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('build_dir', nargs='?', help='folder written by tools/flash.py --dry-run')
    ap.add_argument('--device', required=True, choices=DEVICES,
                    help="target chip, or 'mep' for a bundle without chip-specific files")
    ap.add_argument('--device-id', help='restrict the bundle to one device (its hostname)')
    ap.add_argument('--version', default=None, help='the release version (default: '
                    'tools/version.py, e.g. 0.2.0+5.g1a2b3c4); the bundle carries it in release.py')
    ap.add_argument('--key-file', help='file holding the OTA key (hex); prompted if omitted')
    ap.add_argument('-o', '--output', help='bundle file to write')
    ap.add_argument('--verify', metavar='BUNDLE', help='check a bundle instead of building one')
    a = ap.parse_args(argv)
    try:
        key = read_key(a.key_file)
        if a.verify:
            chip = a.device if a.device != 'mep' else 'esp32'
            s = verify(a.verify, key, chip, a.device_id)
            print('%s: valid bundle, version %s, %d files, %d bytes'
                  % (a.verify, s['version'], s['files'], s['bytes']))
            return 0
        if not a.build_dir or not a.output:
            ap.error('BUILD_DIR and -o are needed to build a bundle')
        files = collect(a.build_dir)
        m = write_bundle(a.output, files, key, a.device, a.version or release_version.describe(),
                         a.device_id)
        print('wrote %s: %d files, version %s' % (a.output, len(m['files']), m['version']))
        return 0
    except (BundleError, ota.OtaError) as e:
        print('bundle: %s' % e, file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
