#!/usr/bin/env bash
# The bundled corpus: the King James Bible (public domain; see docs/corpus.md) from Debian's
# bible-kjv package, as plain UTF-8 text with one verse per line (verse numbers removed) and the
# chapter headings kept. Writes DIR/kjv.txt and its split, DIR/kjv-train.txt (first 95%) and
# DIR/kjv-valid.txt (last 5%), the same split `attamba train --val-frac 0.05` uses.
#   scripts/corpus.sh [DIR]     (default: build/corpus)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/corpus}
command -v bible >/dev/null || { echo "corpus: 'bible' not found: run scripts/setup.sh (package bible-kjv)" >&2; exit 1; }
mkdir -p "$out"
if [ ! -s "$out/kjv.txt" ]; then
  bible Gen1:1-Rev22:21 | awk '
    /^ +[0-9]+ / { if (verse != "") print verse; sub(/^ +[0-9]+ /, ""); verse = $0; next }
    /^$/         { if (verse != "") print verse; verse = ""; next }
    verse == ""  { print ""; print $0; next }                 # a chapter heading
                 { verse = verse " " $0 }                     # a wrapped line of the verse
    END          { if (verse != "") print verse }' > "$out/kjv.txt.tmp"
  mv "$out/kjv.txt.tmp" "$out/kjv.txt"
fi
bytes=$(stat -c %s "$out/kjv.txt")
train=$(( bytes - bytes / 20 ))
head -c "$train" "$out/kjv.txt" > "$out/kjv-train.txt"
tail -c +"$(( train + 1 ))" "$out/kjv.txt" > "$out/kjv-valid.txt"
echo "corpus: $out/kjv.txt ($bytes bytes): $(stat -c %s "$out/kjv-train.txt") train, $(stat -c %s "$out/kjv-valid.txt") validation"
