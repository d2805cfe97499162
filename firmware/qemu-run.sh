#!/bin/sh
# Cargo runner for every board: reads the QEMU machine, CPU and -icount shift that
# build.rs embedded in the ELF ("EDGEKD_QEMU machine=... cpu=... shift=..."), so the
# board's settings are defined once, and runs the firmware with semihosting. QEMU's
# exit status is the firmware's verdict.
set -eu
elf="$1"
shift
marker=$(grep -a -o 'EDGEKD_QEMU [^[:cntrl:]]*' "$elf" | head -n 1 || true)
if [ -z "$marker" ]; then
    echo "qemu-run.sh: $elf has no EDGEKD_QEMU marker (not an edgekd firmware?)" >&2
    exit 2
fi
if ! command -v qemu-system-arm >/dev/null 2>&1; then
    echo "qemu-run.sh: qemu-system-arm not found; install it: apt-get install -y qemu-system-arm" >&2
    exit 2
fi
machine="" cpu="" icount=""
for kv in $marker; do
    case "$kv" in
        machine=*) machine=${kv#machine=} ;;
        cpu=*) cpu="-cpu ${kv#cpu=}" ;;
        shift=*) icount=${kv#shift=} ;;
    esac
done
# shellcheck disable=SC2086 # $cpu is either empty or two words on purpose.
exec qemu-system-arm -M "$machine" $cpu -nographic -monitor none -serial none \
    -semihosting-config enable=on,target=native -icount shift="$icount" \
    -kernel "$elf" "$@"
