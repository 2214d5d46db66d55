#!/bin/sh
# Install KiCad 9 (kicad-cli, symbol and footprint libraries) from Debian bookworm-backports.
# Idempotent: does nothing when `kicad-cli version` already reports 9.x.
#
#   hardware/kicad/install-kicad.sh --3d    also the 3D models this board uses (for the renders):
#       fetches KiCad's 3D model package (kicad-packages3d, ~330 MB download) once and unpacks
#       only the models the board file names (a few MB) into /usr/share/kicad/3dmodels.
# Enables backports by adding the suite to the machine's existing Debian source entry
# (no mirror host name is written anywhere). Uses sudo when not run as root.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
SUDO=
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi

models() {
    # the 3D models named by the board's footprints, unpacked from KiCad's model package
    dir=/usr/share/kicad/3dmodels
    need=$(grep -o '${KICAD9_3DMODEL_DIR}/[^"]*' "$HERE/mep-drawer.kicad_pcb" \
           | sed 's|^${KICAD9_3DMODEL_DIR}/||' | sort -u)
    missing=
    for m in $need; do
        [ -f "$dir/$m" ] || grep -qxF "$m" "$dir/.absent-from-kicad-packages3d" 2>/dev/null \
            || missing="$missing ./usr/share/kicad/3dmodels/$m"
    done
    if [ -z "$missing" ]; then echo "3D models: all $(echo "$need" | wc -l) present in $dir"; return 0; fi
    tmp=$(mktemp -d)
    chmod 777 "$tmp"
    (cd "$tmp" && apt-get download -t bookworm-backports kicad-packages3d)
    deb=$(ls "$tmp"/kicad-packages3d_*.deb)
    dpkg-deb --fsys-tarfile "$deb" | tar -t >"$tmp/list"
    have= ; absent=
    for m in $missing; do
        if grep -qxF "$m" "$tmp/list"; then have="$have $m"; else absent="$absent ${m#./usr/share/kicad/3dmodels/}"; fi
    done
    if [ -n "$have" ]; then
        dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" $have
        $SUDO mkdir -p "$dir"
        (cd "$tmp/usr/share/kicad/3dmodels" && $SUDO cp --parents $(echo "$have" | sed 's|\./usr/share/kicad/3dmodels/||g') "$dir/")
    fi
    rm -rf "$tmp"
    echo "3D models: unpacked $(echo $have | wc -w) into $dir"
    if [ -n "$absent" ]; then
        echo "3D models not in KiCad's package (shown without a body):$absent"
        $SUDO mkdir -p "$dir"
        for m in $absent; do echo "$m"; done | $SUDO tee -a "$dir/.absent-from-kicad-packages3d" >/dev/null
    fi
}

if command -v kicad-cli >/dev/null 2>&1; then
    v=$(kicad-cli version 2>/dev/null | head -n1 || true)
    case "$v" in
        9.*) echo "kicad-cli $v already installed"
             if [ "${1:-}" = "--3d" ]; then models; fi
             exit 0 ;;
    esac
fi

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

if [ "${1:-}" = "--3d" ]; then models; fi
