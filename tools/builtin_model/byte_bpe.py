"""A small GPT-2-style byte-level BPE tokenizer: training, encoding, decoding, and export to a
Hugging Face tokenizer.json that Pagoda's HfTokenizer (tokenizer/hf_tokenizer.h) loads.

The tokenizer.json uses only components Pagoda supports: no normalizer; pre-tokenizer ByteLevel
(GPT-2 regex, add_prefix_space false); model BPE (no unk, no byte fallback: every byte is a
token); post-processor TemplateProcessing that prepends <s>; decoder ByteLevel. Special tokens
<s> (BOS, id 0) and </s> (EOS, id 1) are added tokens and vocabulary entries.

Encoding here is the reference for the parity test: Pagoda's C++ tokenizer must give the same ids.
Needs Debian's python3-regex (for \\p{L} and \\p{N} in GPT-2's pattern).
"""

import collections
import json

import regex

# GPT-2's pre-tokenization pattern, which the ByteLevel pre-tokenizer applies (use_regex true).
GPT2_PATTERN = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")

BOS = "<s>"
EOS = "</s>"
SPECIALS = (BOS, EOS)  # ids 0 and 1
FIRST_BYTE_ID = len(SPECIALS)  # byte b is token FIRST_BYTE_ID + b


def bytes_to_unicode():
    """GPT-2's reversible map from bytes to printable characters ("Ġ" stands for b" ")."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) +
                 list(range(ord("®"), ord("ÿ") + 1)))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(printable, chars)}


_BYTE_CHAR = bytes_to_unicode()


def byte_level(piece):
    """The byte-level spelling of raw bytes."""
    return "".join(_BYTE_CHAR[b] for b in piece)


def pre_tokenize(text):
    """The words GPT-2's ByteLevel pre-tokenizer cuts `text` into, as UTF-8 bytes."""
    return [m.group(0).encode("utf-8") for m in GPT2_PATTERN.finditer(text)]


class ByteBpe:
    """A trained tokenizer: pieces[id] are raw bytes (specials: their text encoded), merges are
    (left_id, right_id) in rank order."""

    def __init__(self, merges):
        self.pieces = [s.encode("utf-8") for s in SPECIALS] + [bytes([b]) for b in range(256)]
        self.merges = []
        self.ranks = {}
        piece_ids = {p: i for i, p in enumerate(self.pieces)}
        for left, right in merges:
            # Two merges may spell the same piece; like Hugging Face, both then make one id.
            merged = self.pieces[left] + self.pieces[right]
            if merged not in piece_ids:
                piece_ids[merged] = len(self.pieces)
                self.pieces.append(merged)
            self.ranks[(left, right)] = (len(self.merges), piece_ids[merged])
            self.merges.append((left, right))
        self._cache = {}

    @property
    def vocab_size(self):
        return len(self.pieces)

    @property
    def bos_id(self):
        return 0

    @property
    def eos_id(self):
        return 1

    def encode_word(self, word):
        """Ids of one pre-tokenized word (bytes): merges applied lowest rank first, leftmost
        first among equal ranks, as Hugging Face's BPE does."""
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        symbols = [FIRST_BYTE_ID + b for b in word]
        while len(symbols) > 1:
            best = None
            for i in range(len(symbols) - 1):
                r = self.ranks.get((symbols[i], symbols[i + 1]))
                if r is not None and (best is None or r[0] < best[0]):
                    best = (r[0], r[1], i)
            if best is None:
                break
            _, new_id, i = best
            symbols[i:i + 2] = [new_id]
        self._cache[word] = symbols
        return symbols

    def encode(self, text, add_bos=False):
        """Ids of `text` (which must not contain the literal special-token strings)."""
        ids = [self.bos_id] if add_bos else []
        for word in pre_tokenize(text):
            ids.extend(self.encode_word(word))
        return ids

    def decode(self, ids):
        """Text of `ids`, special tokens skipped."""
        return b"".join(self.pieces[i] for i in ids
                        if i >= len(SPECIALS)).decode("utf-8", errors="replace")

    def to_tokenizer_json(self):
        spelled = list(SPECIALS) + [byte_level(p) for p in self.pieces[len(SPECIALS):]]
        vocab = {spelling: i for i, spelling in enumerate(spelled)}
        if len(vocab) != len(spelled):
            raise ValueError("duplicate vocabulary entries")
        byte_level_options = {"add_prefix_space": False, "trim_offsets": True, "use_regex": True}
        sequence = lambda name, type_id: {"Sequence": {"id": name, "type_id": type_id}}
        bos_item = lambda type_id: {"SpecialToken": {"id": BOS, "type_id": type_id}}
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": [{"id": i, "content": s, "single_word": False, "lstrip": False,
                              "rstrip": False, "normalized": False, "special": True}
                             for i, s in enumerate(SPECIALS)],
            "normalizer": None,
            "pre_tokenizer": dict(type="ByteLevel", **byte_level_options),
            "post_processor": {
                "type": "TemplateProcessing",
                "single": [bos_item(0), sequence("A", 0)],
                "pair": [bos_item(0), sequence("A", 0), bos_item(1), sequence("B", 1)],
                "special_tokens": {BOS: {"id": BOS, "ids": [self.bos_id], "tokens": [BOS]}},
            },
            "decoder": dict(type="ByteLevel", **byte_level_options),
            "model": {
                "type": "BPE", "dropout": None, "unk_token": None,
                "continuing_subword_prefix": None, "end_of_word_suffix": None,
                "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                "vocab": vocab,
                "merges": ["%s %s" % (spelled[a], spelled[b]) for a, b in self.merges],
            },
        }

    def write(self, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_tokenizer_json(), f, ensure_ascii=False, indent=1)
            f.write("\n")


def train(texts, vocab_size):
    """Learns vocab_size - 258 merges from `texts` (an iterable of str): each step merges the
    most frequent adjacent pair within pre-tokenized words (ties: the pair whose merged bytes,
    then left bytes, sort first). Deterministic."""
    counts = collections.Counter()
    for text in texts:
        counts.update(pre_tokenize(text))
    words = [[FIRST_BYTE_ID + b for b in w] for w in counts]
    freqs = list(counts.values())
    pieces = [s.encode("utf-8") for s in SPECIALS] + [bytes([b]) for b in range(256)]
    piece_ids = {p: i for i, p in enumerate(pieces)}
    pair_counts = collections.Counter()
    where = collections.defaultdict(set)  # pair -> indices of words that hold it
    for wi, (w, f) in enumerate(zip(words, freqs)):
        for pair in zip(w, w[1:]):
            pair_counts[pair] += f
            where[pair].add(wi)
    merges = []
    while len(pieces) < vocab_size and pair_counts:
        best = max(pair_counts.items(),
                   key=lambda kv: (kv[1], _Desc(pieces[kv[0][0]] + pieces[kv[0][1]]),
                                   _Desc(pieces[kv[0][0]])))
        (left, right), count = best
        if count < 2:
            break
        merged_piece = pieces[left] + pieces[right]
        new_id = piece_ids.get(merged_piece)
        if new_id is None:
            new_id = piece_ids[merged_piece] = len(pieces)
            pieces.append(merged_piece)
        merges.append((left, right))
        for wi in list(where[(left, right)]):
            w, f = words[wi], freqs[wi]
            for pair in zip(w, w[1:]):
                pair_counts[pair] -= f
                if pair_counts[pair] <= 0:
                    del pair_counts[pair]
            merged = []
            i = 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == left and w[i + 1] == right:
                    merged.append(new_id)
                    i += 2
                else:
                    merged.append(w[i])
                    i += 1
            words[wi] = merged
            for pair in zip(merged, merged[1:]):
                pair_counts[pair] += f
                where[pair].add(wi)
        del where[(left, right)]
        pair_counts.pop((left, right), None)
    return ByteBpe(merges)


class _Desc:
    """Reverses the order of bytes values inside max(): the smallest sorts as the largest."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __lt__(self, other):
        return self.value > other.value

    def __eq__(self, other):
        return self.value == other.value
