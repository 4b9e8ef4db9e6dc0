#!/usr/bin/env python3
"""Acceptance check of the main job: the word counts summed over every batch directory that
`wordcount --out DIR` wrote equal the word counts of the whole input, computed here
independently (a word is a maximal run of ASCII letters and digits, lowercased).

usage: scripts/check_wordcount.py INPUT OUT_DIR
"""
import collections
import pathlib
import re
import sys


def expected(path):
    counts = collections.Counter()
    for line in pathlib.Path(path).read_bytes().split(b"\n"):
        text = line.decode("utf-8", errors="replace")
        counts.update(w.lower() for w in re.findall(r"[A-Za-z0-9]+", text))
    return counts


def streamed(out_dir):
    counts = collections.Counter()
    batches = sorted(pathlib.Path(out_dir).glob("batch-*"))
    for batch in batches:
        if not (batch / "_SUCCESS").exists():
            sys.exit(f"{batch}: no _SUCCESS marker, the batch did not finish")
        for part in sorted(batch.glob("part-*")):
            for line in part.read_text(encoding="utf-8").splitlines():
                word, count = line.rsplit("\t", 1)
                counts[word] += int(count)
    return counts, len(batches)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    want = expected(sys.argv[1])
    got, batches = streamed(sys.argv[2])
    missing = {w: c - got[w] for w, c in want.items() if got[w] < c}
    extra = {w: c - want[w] for w, c in got.items() if c > want[w]}
    print(f"{batches} batches, {sum(got.values())} words streamed, {sum(want.values())} expected, "
          f"{len(want)} distinct")
    if missing or extra:
        print(f"LOST: {dict(list(missing.items())[:10])}  DOUBLED: {dict(list(extra.items())[:10])}")
        sys.exit(1)
    print("OK: none lost, none counted twice")


if __name__ == "__main__":
    main()
