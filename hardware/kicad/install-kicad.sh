#!/bin/sh
# Install KiCad 9 (kicad-cli, symbol and footprint libraries) from Debian bookworm-backports.
# Idempotent: does nothing when `kicad-cli version` already reports 9.x.
# Enables backports by adding the suite to the machine's existing Debian source entry
# (no mirror host name is written anywhere). Uses sudo when not run as root.
set -eu

if command -v kicad-cli >/dev/null 2>&1; then
    v=$(kicad-cli version 2>/dev/null | head -n1 || true)
    case "$v" in
        9.*) echo "kicad-cli $v already installed"; exit 0 ;;
    esac
fi

SUDO=
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi

SRC=/etc/apt/sources.list.d/debian.sources
if [ -f "$SRC" ]; then
    # deb822: add bookworm-backports to the "Suites: bookworm ..." line of the main archive entry
    if ! grep -q '^Suites:.*bookworm-backports' "$SRC"; then
        $SUDO sed -i -E '/^Suites:.*\bbookworm\b/{/bookworm-security/!s/$/ bookworm-backports/}' "$SRC"
    fi
elif [ -f /etc/apt/sources.list ] && ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    # one-line format: duplicate the first bookworm main line with the backports suite
    line=$(grep -E '^deb [^#]* bookworm ' /etc/apt/sources.list | head -n1 || true)
    if [ -n "$line" ]; then
        echo "$line" | sed -E 's/ bookworm / bookworm-backports /' | $SUDO tee -a /etc/apt/sources.list >/dev/null
    fi
fi

$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -t bookworm-backports --no-install-recommends \
    kicad kicad-symbols kicad-footprints

kicad-cli version
