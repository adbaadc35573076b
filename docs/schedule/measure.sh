#!/usr/bin/env bash
# The schedule study of BENCHMARKS.md ("Coarse-to-fine against single scale"): today's default (500
# L-BFGS iterations at the output size, --no-multiscale) against coarse-to-fine schedules from 128 px,
# on the ../shared/images pairs. Every run uses --threads 2 under /usr/bin/time -v; every result is
# scored with impasto's own objective at the output size (`-n 0 --init RESULT --no-multiscale`: the
# start line gives RESULT's content, style, tv and total losses with the default weights).
#
#   IMPASTO=target/release/impasto IMPASTO_WEIGHTS=../shared/models/vgg16-conv-imagenet.safetensors \
#     docs/schedule/measure.sh [SIZES] [PAIRS]     # defaults: "512 256" and the four pairs below
#   python3 docs/schedule/table.py /tmp/sched/out  # the table
#
# The inputs are pre-resized once (ffmpeg, Lanczos, longest side = the output size) so that every run
# of a size reads the same pixels. A run whose log exists is skipped, so an interrupted sweep goes on.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${IMPASTO:=impasto}" "${IMAGES:=$here/../../../shared/images}" "${OUT:=/tmp/sched/out}" "${IN:=/tmp/sched/in}"
export IMPASTO OUT IN
sizes=${1:-512 256}
pairs=${2:-astronaut:starry_night chelsea:the_scream coffee:shipwreck rocket:starry_night}

mkdir -p "$IN" "$OUT"
for s in $sizes; do
  for f in astronaut.png chelsea.png coffee.png rocket.jpg starry_night.jpg the_scream.jpg shipwreck.jpg; do
    dst="$IN/${f%.*}_$s.png"
    [ -e "$dst" ] || ffmpeg -loglevel error -y -i "$IMAGES/$f" \
      -vf "scale='if(gte(iw,ih),$s,-1)':'if(gte(iw,ih),-1,$s)':flags=lanczos" -pix_fmt rgb24 "$dst"
  done
done

score() { # score NAME SIZE CONTENT STYLE: impasto's objective of OUT/NAME.png at the output size
  local name=$1 s=$2 c=$3 st=$4
  [ -e "$OUT/$name.png" ] && [ ! -s "$OUT/$name.score" ] || return 0
  "$IMPASTO" "$IN/${c}_$s.png" "$IN/${st}_$s.png" --init "$OUT/$name.png" -n 0 --no-multiscale \
    --size "$s" --threads 2 --print-every 1 -o "$OUT/$name.scored.png" 2>&1 | grep '^start' >"$OUT/$name.score"
}

for s in $sizes; do
  for p in $pairs; do
    c=${p%:*} st=${p#*:}
    # Today's default: 500 iterations at the output size.
    "$here/run1.sh" "base${s}_$c" "$s" "$c" "$st" -n 500 --no-multiscale
    score "base${s}_$c" "$s" "$c" "$st"
    # Coarse-to-fine from 128 px, ratio 2, the output scale getting a sixth of 500 and each coarser
    # scale twice the next one's: at 512 px 128 ×336, 256 ×168, 512 ×84 (with the halving rule of
    # --scale-iterations' default, -n 336 gives exactly that); at 256 px 128 ×168, 256 ×84.
    case $s in
      512) "$here/run1.sh" "new${s}_$c" "$s" "$c" "$st" --min-size 128 -n 336 ;;
      256) "$here/run1.sh" "new${s}_$c" "$s" "$c" "$st" --min-size 128 -n 168 ;;
    esac
    score "new${s}_$c" "$s" "$c" "$st"
  done
done

# The longer final scale (its log gives the loss every 10 iterations of the 512 px scale):
# 128 ×300, 256 ×150, 512 ×150.
if [[ " $sizes " == *" 512 "* ]]; then
  "$here/run1.sh" x512_astronaut_m128_300_150 512 astronaut starry_night --min-size 128 -n 300 --scale-iterations 150
  score x512_astronaut_m128_300_150 512 astronaut starry_night
fi
