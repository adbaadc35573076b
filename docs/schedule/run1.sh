#!/usr/bin/env bash
# One measured run: run1.sh NAME SIZE CONTENT STYLE [impasto flags...]
# Writes $OUT/NAME.png (the result), NAME.log (impasto's progress lines) and NAME.time (/usr/bin/time -v).
# A run whose log is already there is skipped (so an interrupted sweep can be continued).
set -euo pipefail
: "${IMPASTO:=impasto}" "${OUT:=/tmp/sched/out}" "${IN:=/tmp/sched/in}"
name=$1 size=$2 content=$3 style=$4; shift 4
mkdir -p "$OUT"
[ -e "$OUT/$name.log" ] && exit 0
/usr/bin/time -v -o "$OUT/$name.time" "$IMPASTO" "$IN/${content}_$size.png" "$IN/${style}_$size.png" \
  -o "$OUT/$name.png" --size "$size" --threads 2 --print-every 10 "$@" >"$OUT/$name.log" 2>&1
