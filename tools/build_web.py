#!/usr/bin/env python3
"""Build the web UI assets: npm ci in firmware/web/src (uPlot, pinned in package-lock.json),
then write pre-gzipped files to firmware/web/static/ (git-ignored build output):

  uplot.js.gz, uplot.css.gz   from node_modules/uplot/dist (already minified)
  app.js.gz, app.css.gz,      from firmware/web/src (comments and indentation stripped)
  settings.js.gz, dashboard.js.gz, status.js.gz, ota.js.gz, login.js.gz
  settings.html.gz, dashboard.html.gz, status.html.gz, ota.html.gz, tinker.html.gz,
  login.html.gz, setup.html.gz
                              pages the browser fills from the JSON API; {{v}} becomes a hash
                              of the assets (their URLs change when they do), {{tz}}
                              the time zone names of firmware/system/tz.py as <option>s

  python tools/build_web.py [--skip-npm] [--check]

--skip-npm uses node_modules as it is (when present). --check only reports sizes.
The gzip output is reproducible (mtime 0, no file name).
"""
import argparse
import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, 'firmware', 'web', 'src')
OUT = os.path.join(ROOT, 'firmware', 'web', 'static')
UPLOT = os.path.join(SRC, 'node_modules', 'uplot', 'dist')


def minify_js(text):
    out = []
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith('//'):
            continue
        out.append(s)
    return '\n'.join(out) + '\n'


PAGES = ('settings.html', 'dashboard.html', 'status.html', 'ota.html', 'tinker.html',
         'login.html', 'setup.html')
SCRIPTS = ('settings.js', 'dashboard.js', 'status.js', 'ota.js', 'login.js')


def minify_html(text):
    return '\n'.join(s.strip() for s in text.splitlines() if s.strip()) + '\n'


def minify_css(text):
    text = re.sub(r'/\*.*?\*/', '', text, flags=re.S)
    return '\n'.join(s.strip() for s in text.splitlines() if s.strip()) + '\n'


def tz_options():
    """<option>s of the time zone names the firmware knows (firmware/system/tz.py), for {{tz}}."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        '_tz_names', os.path.join(ROOT, 'firmware', 'system', 'tz.py'))
    tz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tz)
    return ''.join('<option value="%s">' % n for n in tz.names())


# the tinker page's predefined reads: label, table, (offset, count) or None for a full read
PRESETS = (('BT01', 'BT01', None), ('BT21', 'BT21', None), ('BT23 0/16', 'BT23', (0, 16)),
           ('BT28', 'BT28', None), ('BT52', 'BT52', None), ('ET03', 'ET03', None),
           ('ET11', 'ET11', None), ('ET13', 'ET13', None), ('ET50', 'ET50', None),
           ('BT08', 'BT08', None))


def preset_buttons():
    """The tinker page's preset buttons ({{presets}}), messages made by firmware/mep/requests.py."""
    fw = os.path.join(ROOT, 'firmware')
    if fw not in sys.path:
        sys.path.append(fw)
    from mep import requests as rq
    out = []
    for label, table, part in PRESETS:
        t = getattr(rq, table)
        msg = rq.partial_read(t, part[0], part[1]) if part else rq.full_read(t)
        out.append('<button type="button" data-hex="%s">%s</button>' % (msg.hex(), label))
    return ''.join(out)


def gz(data):
    buf = io.BytesIO()
    with gzip.GzipFile(filename='', mode='wb', fileobj=buf, compresslevel=9, mtime=0) as f:
        f.write(data)
    return buf.getvalue()


def npm_ci():
    npm = shutil.which('npm')
    if not npm:
        raise SystemExit('build_web: npm not found (install nodejs/npm)')
    subprocess.run([npm, 'ci', '--ignore-scripts', '--no-audit', '--no-fund'], cwd=SRC,
                   check=True)


def build(skip_npm=False):
    if not (skip_npm and os.path.isdir(UPLOT)):
        npm_ci()
    with open(os.path.join(SRC, 'app.js'), encoding='utf-8') as f:
        app_js = minify_js(f.read()).encode()
    with open(os.path.join(SRC, 'app.css'), encoding='utf-8') as f:
        app_css = minify_css(f.read()).encode()
    scripts = []
    for name in SCRIPTS:
        with open(os.path.join(SRC, name), encoding='utf-8') as f:
            scripts.append((name, minify_js(f.read()).encode()))
    with open(os.path.join(UPLOT, 'uPlot.iife.min.js'), 'rb') as f:
        uplot_js = f.read()
    with open(os.path.join(UPLOT, 'uPlot.min.css'), 'rb') as f:
        uplot_css = f.read()
    os.makedirs(OUT, exist_ok=True)
    sizes = {}
    v = hashlib.sha256(uplot_js + uplot_css + app_js + app_css +
                       b''.join(d for _n, d in scripts)).hexdigest()[:8]
    pages = []
    for name in PAGES:
        with open(os.path.join(SRC, name), encoding='utf-8') as f:
            pages.append((name, minify_html(f.read()).replace('{{v}}', v)
                          .replace('{{tz}}', tz_options())
                          .replace('{{presets}}', preset_buttons()).encode()))
    for name, data in [('uplot.js', uplot_js), ('uplot.css', uplot_css), ('app.js', app_js),
                       ('app.css', app_css)] + scripts + pages:
        z = gz(data)
        path = os.path.join(OUT, name + '.gz')
        tmp = path + '.tmp'
        with open(tmp, 'wb') as f:
            f.write(z)
        os.replace(tmp, path)
        sizes[name] = (len(data), len(z))
    return sizes


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--skip-npm', action='store_true', help='reuse node_modules when present')
    a = ap.parse_args(argv)
    sizes = build(a.skip_npm)
    total = 0
    for name, (raw, z) in sizes.items():
        print('%-10s %7d bytes -> %6d gzip' % (name, raw, z))
        total += z
    print('total gzip: %d bytes (%s)' % (total, os.path.relpath(OUT, ROOT)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
