"""The King James Version of the Bible as a list of verses, and its fixed train/held-out split.

Source: Debian's `bible-kjv-text` (the verse data, /usr/lib/bible.data) read through the `bible`
program of Debian's `bible-kjv`. The KJV text (1611) is in the public domain; the data file's
legend allows unrestricted use ("Users may copy, modify or distribute this file at will",
Chip Chapin, 1989; /usr/share/doc/bible-kjv-text/copyright).

A verse is its text alone: no book, chapter or verse number. The text is plain ASCII.
"""

import re
import subprocess

# The split: verse i (0-based, canonical order Genesis 1:1 .. Revelation 22:21) is held out
# when i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1, i.e. every 50th verse (2%).
HELD_OUT_EVERY = 50
NUM_VERSES = 31102

_VERSE_LINE = re.compile(r"^ +(\d+) (.+)$")
_CHAPTER_LINE = re.compile(r"^(\S.*) (\d+)$")


def load_verses():
    """Returns [(reference, text)] for every verse, e.g. ("Genesis 1:1", "In the beginning ...")."""
    out = subprocess.run(["bible", "-l0", "gen1:1-rev22:21"], check=True, capture_output=True,
                         text=True, encoding="ascii").stdout
    verses = []
    chapter = None
    for line in out.split("\n"):
        if not line:
            continue
        verse = _VERSE_LINE.match(line)
        if verse:
            if chapter is None:
                raise ValueError("verse before any chapter heading: %r" % line)
            verses.append(("%s:%s" % (chapter, verse.group(1)), verse.group(2).strip()))
            continue
        heading = _CHAPTER_LINE.match(line)
        if not heading:
            raise ValueError("unexpected line from bible: %r" % line)
        chapter = line
    if len(verses) != NUM_VERSES:
        raise ValueError("expected %d verses, got %d" % (NUM_VERSES, len(verses)))
    return verses


def is_held_out(index):
    return index % HELD_OUT_EVERY == HELD_OUT_EVERY - 1


def split(verses):
    """(train, held_out): lists of (reference, text), each in canonical order."""
    train = [v for i, v in enumerate(verses) if not is_held_out(i)]
    held_out = [v for i, v in enumerate(verses) if is_held_out(i)]
    return train, held_out


if __name__ == "__main__":
    verses = load_verses()
    train, held_out = split(verses)
    print("%d verses: %d train, %d held out; %d characters" %
          (len(verses), len(train), len(held_out), sum(len(t) for _, t in verses)))
    for ref, text in held_out[:3]:
        print(ref, "|", text)
