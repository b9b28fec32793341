#!/usr/bin/env python3
"""Writes tests/fixtures/perplexity/genesis-1-11.txt: chapters 1 to 11 of the Book of Genesis in the
King James Version, as Debian's `bible` program (package bible-kjv, text from bible-kjv-text 4.38)
prints them, with its line wrapping undone: a heading per chapter, one verse per line without its
number. `apt-get install bible-kjv` first. The KJV text is in the public domain (see the README beside
the text).
"""

import os
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "perplexity", "genesis-1-11.txt")


def main():
    raw = subprocess.run(
        ["bible", "Genesis1:1-11:32"], check=True, capture_output=True, text=True
    ).stdout
    chapters = []
    for line in raw.splitlines():
        heading = re.fullmatch(r"Genesis (\d+)", line.strip())
        verse = re.match(r"\s+(\d+) (.*)", line)
        if heading:
            chapters.append((int(heading.group(1)), []))
        elif verse:
            chapters[-1][1].append(verse.group(2).strip())
        elif line.strip():
            chapters[-1][1][-1] += " " + line.strip()
    parts = ["The First Book of Moses, called Genesis"]
    for number, verses in chapters:
        parts.append(f"Chapter {number}\n\n" + "\n".join(verses))
    with open(OUT, "w") as f:
        f.write("\n\n".join(parts) + "\n")
    print(f"{OUT}: {len(chapters)} chapters, {sum(len(v) for _, v in chapters)} verses")


if __name__ == "__main__":
    main()
