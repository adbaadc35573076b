#!/usr/bin/env python3
"""Prints the schedule table from measure.sh's output folder: per run the schedule (from impasto's
start line), wall and CPU (user+sys) seconds (/usr/bin/time -v), and the losses at the output size
(the .score files), with the ratios to the same pair's and size's baseline (base*)."""
import pathlib
import re
import sys

out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/sched/out")


def timing(p):
    t = p.read_text()
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", t).group(1))
    sys_ = float(re.search(r"System time \(seconds\): ([\d.]+)", t).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", t).group(1)
    secs = 0.0
    for part in wall.split(":"):
        secs = secs * 60 + float(part)
    return secs, user + sys_


def losses(p):
    t = p.read_text()
    return {k: float(re.search(k + r" ([\d.e+-]+)", t).group(1)) for k in ("content", "style", "tv", "total")}


def schedule(p):
    first = p.read_text().splitlines()[0]
    m = re.search(r"in \d+ scales \((.*?)\)", first)
    if m:
        return " → ".join(m.group(1).split(", "))
    m = re.search(r"start (\d+x\d+), (\d+) iterations", first)
    return f"{m.group(1)} ×{m.group(2)}"


rows = []
for log in sorted(out.glob("*.log")):
    name = log.stem
    tfile, sfile = out / f"{name}.time", out / f"{name}.score"
    if not (tfile.exists() and sfile.exists() and sfile.stat().st_size):
        continue
    m = re.match(r"([a-z]+)(\d+)_([a-z]+)(?:_(.*))?", name)
    if not m:
        continue
    kind, size, pair, variant = m.groups()
    wall, cpu = timing(tfile)
    rows.append((int(size), pair, kind, variant or "", schedule(log), wall, cpu, losses(sfile)))

base = {(r[0], r[1]): r for r in rows if r[2] == "base"}
print("| size | pair | run | schedule | wall s | CPU s | CPU vs base | content | style | tv | total | total vs base |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for size, pair, kind, variant, sched, wall, cpu, l in sorted(rows, key=lambda r: (r[0], r[1], r[2] != "base", r[2], r[3])):
    b = base.get((size, pair))
    cpu_r = f"{cpu / b[6]:.2f}" if b else "–"
    tot_r = f"{l['total'] / b[7]['total']:.3f}" if b else "–"
    print(
        f"| {size} | {pair} | {kind} | {sched} | {wall:.0f} | {cpu:.0f} | {cpu_r} | {l['content']:.3e} | "
        f"{l['style']:.3e} | {l['tv']:.3e} | {l['total']:.3e} | {tot_r} |"
    )
