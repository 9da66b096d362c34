#!/bin/sh
# pds-harden: Helm post-renderer of the pds-workspace chart (plugin.yaml, docs/adr/0018-*.md).
# Reads the rendered release on stdin and writes it hardened on stdout, or exits non-zero with the
# reason. The YAML work is done by Helm itself, on the small chart beside this script
# (chart/templates/release.yaml): nothing to install but the helm the operator already runs.
set -eu

# Helm 4.1 keeps a post-renderer's stderr to itself (it prints "exited with error" only): the
# reason also goes to helm's own stderr (Linux), or to the terminal.
say() {
    printf '%s\n' "$1" >&2
    if [ -w "/proc/$PPID/fd/2" ]; then
        printf '%s\n' "$1" >>"/proc/$PPID/fd/2"
    elif (: >>/dev/tty) 2>/dev/null; then
        printf '%s\n' "$1" >>/dev/tty
    fi
}

here=${HELM_PLUGIN_DIR:-$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)}
helm=${HELM_BIN:-helm}
if ! command -v "$helm" >/dev/null 2>&1; then
    say "pds-harden: refused the release: no helm on PATH to read it with (set HELM_BIN to its path)"
    exit 2
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/pds-harden.XXXXXX")
trap 'rm -rf "$work"' EXIT
cat >"$work/manifests"
if ! "$helm" template pds-harden "$here/chart" --set-file "manifests=$work/manifests" 2>"$work/error"; then
    # helm's "Error: execution error at (pds-harden/templates/...): pds-harden: <reason>"
    reason=$(sed -n 's/^Error: .*): \(pds-harden: \)/\1/p' "$work/error")
    say "${reason:-pds-harden: $(cat "$work/error")}"
    say "pds-harden: nothing was sent to the cluster"
    exit 1
fi
