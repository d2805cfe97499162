#!/usr/bin/env python3
"""Instruction-level profile of an edgekd firmware ELF under QEMU.

QEMU 7.2 (Debian) ships no TCG plugins, so this runs the firmware one instruction per
translation block (`-singlestep -d exec,nochain`), counts how often each PC executed and
maps the counts onto `llvm-objdump`'s disassembly. Counts are divided by `--per` (the
firmware runs two inferences per golden sample: 32 for the reference models' 16 samples),
so they read as "per inference". The harness's own printing shows up too; look at the
kernel and runtime functions.

    cargo run --release -p edgekd -- bench --target qemu-m4 --model models/reference/tiny_cnn.ekd
    scripts/qemu_profile.py firmware/target/thumbv7em-none-eabihf/release/edgekd-firmware \
        --per 32 --function conv2d_in

prints the functions by instructions executed, then (with --function) the function's
disassembly with per-inference counts and a summary of how many instructions run how
often: a loop body shows up as a run of lines with the same count.
"""

import argparse
import bisect
import collections
import re
import subprocess
import sys
import tempfile


def marker(elf):
    data = open(elf, "rb").read()
    m = re.search(rb"EDGEKD_QEMU ([^\x00-\x1f]*)", data)
    if not m:
        sys.exit(f"{elf}: no EDGEKD_QEMU marker (not an edgekd firmware?)")
    return dict(kv.split("=", 1) for kv in m.group(1).decode().split() if "=" in kv)


def trace(elf):
    conf = marker(elf)
    with tempfile.NamedTemporaryFile(suffix=".log") as log:
        cmd = ["qemu-system-arm", "-M", conf["machine"]]
        if conf.get("cpu"):
            cmd += ["-cpu", conf["cpu"]]
        cmd += ["-nographic", "-monitor", "none", "-serial", "none",
                "-semihosting-config", "enable=on,target=native", "-icount", "shift=0",
                "-singlestep", "-d", "exec,nochain", "-D", log.name, "-kernel", elf]
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
        counts = collections.Counter()
        # "Trace 0: 0x7f... [00800408/00000400/00000110/ff020201] Reset": the PC is the
        # second field in brackets.
        pc = re.compile(rb"\[[0-9a-f]+/([0-9a-f]+)/")
        with open(log.name, "rb") as f:
            for line in f:
                m = pc.search(line)
                if m:
                    counts[int(m.group(1), 16)] += 1
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("elf")
    ap.add_argument("--per", type=float, default=1.0, help="divide counts by this")
    ap.add_argument("--function", help="annotate functions whose name contains this")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()

    counts = trace(args.elf)
    dis = subprocess.run(["llvm-objdump", "-d", "--no-show-raw-insn", "-C", args.elf],
                         capture_output=True, text=True, check=True).stdout
    # Functions by address from the symbol table: objdump heads some functions with a
    # mapping symbol ($t: Thumb code) instead of their name (the M0 build's ELF).
    syms = subprocess.run(["llvm-nm", "-n", "-C", args.elf], capture_output=True, text=True,
                          check=True).stdout
    starts, names = [], []
    for line in syms.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] in ("t", "T", "W") and not parts[2].startswith("$"):
            # Thumb symbols carry bit 0 set in some tools' output; objdump's are even.
            starts.append(int(parts[0], 16) & ~1)
            names.append(parts[2])
    per_fn = collections.Counter()
    annotated = []
    current = None
    for line in dis.splitlines():
        head = re.match(r"^([0-9a-f]+) <(.*)>:", line)
        if head:
            i = bisect.bisect_right(starts, int(head.group(1), 16)) - 1
            current = names[i] if i >= 0 else head.group(2)
            if args.function and args.function in current:
                annotated.append((None, line))
            continue
        ins = re.match(r"^\s*([0-9a-f]+):\s*(.*)", line)
        if ins and current:
            n = counts.get(int(ins.group(1), 16), 0) / args.per
            per_fn[current] += n
            if args.function and args.function in current:
                annotated.append((n, line))

    for name, n in per_fn.most_common(args.top):
        print(f"{n:12.1f}  {name[:120]}")
    if not args.function:
        return
    print()
    by_count = collections.Counter()
    lines = collections.Counter()
    for n, line in annotated:
        if n is None:
            print(line)
        else:
            print(f"{n:10.1f} {line}")
            if n:
                # Rounded: a loop's lines may differ by a stray count or two.
                key = round(n)
                by_count[key] += n
                lines[key] += 1
    print("\ninstructions per inference by execution count (count, instructions, total):")
    for n, total in by_count.most_common(15):
        print(f"{n:10d} {lines[n]:6d} {total:10.0f}")


if __name__ == "__main__":
    main()
