"""Character-level language modelling: a plain-text corpus cut into fixed-length windows.

The corpus (`find_corpus`) is a UTF-8 `corpus.txt` of the user's, else the three text files of Debian's
fortunes-min package, joined in that order: `apt-get install fortunes-min` puts fortunes, literature and
riddles (98,399 ASCII characters, 88 distinct, in 1:1.99.1-7.3; BSD licence of the University of California,
see /usr/share/doc/fortunes-min/copyright) in /usr/share/games/fortunes. `chars_tiny` is 8 KB of generated
text, for tests.

Splits are contiguous blocks of the text, never shuffled characters or windows: the first 90% of the
characters train, the next 5% validate, the last 5% test, so no two splits share any text. Each block is cut
into non-overlapping windows from its start: x = block[iT : iT+T], y = block[iT+1 : iT+T+1] (the next
character at every position), as many as fit (the last few characters of a block may go unused). The
vocabulary is the sorted set of the whole corpus's characters, so every split's characters have ids.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .core import DATA_DIR_HINT, DataError, Split
from .locate import dataset_dir, is_data_file, search_dirs

CORPUS_FILE = "corpus.txt"
FORTUNES_MIN = ("fortunes", "literature", "riddles")
INSTALL = "apt-get install fortunes-min"
SPLIT_PERCENT = (90, 5, 5)  # train, validation, test: contiguous blocks in this order
SPLIT_NAMES = ("train", "validation", "test")


def find_corpus(data_dir: str | Path | None) -> list[Path] | None:
    """The corpus files: in each searched folder (data_dir/chars, Debian's fortunes folder, data_dir), a
    `corpus.txt`, else all of fortunes-min's files."""
    for folder in search_dirs("chars", data_dir):
        if is_data_file(folder / CORPUS_FILE):
            return [folder / CORPUS_FILE]
        if all([is_data_file(folder / f) for f in FORTUNES_MIN]):
            return [folder / f for f in FORTUNES_MIN]
    return None


def missing_corpus_error(data_dir: str | Path | None) -> DataError:
    searched = ", ".join(map(str, search_dirs("chars", data_dir)))
    return DataError(
        f"no text corpus for 'chars': looked for {CORPUS_FILE}, or fortunes-min's files "
        f"({', '.join(FORTUNES_MIN)}), in {searched}. Fix: `{INSTALL}` (Debian/Ubuntu, as root), or put a "
        f"UTF-8 text file named {CORPUS_FILE} in {dataset_dir('chars', data_dir)} (or point {DATA_DIR_HINT} "
        "at the folder that holds it)."
    )


def read_corpus(paths: list[Path]) -> str:
    parts = []
    for path in paths:
        try:
            parts.append(path.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as e:
            raise DataError(f"{path} is not UTF-8 text ({e}). Fix: convert it, e.g. iconv -t utf-8") from e
    return "".join(parts)


def tiny_corpus(chars: int = 8000) -> str:
    """Deterministic sentences from a small grammar (a linear congruential generator, the same on every
    Python), at least `chars` characters: learnable within a few hundred steps, and never read from disk."""
    subjects = ("the cat", "a dog", "the bird", "my friend", "a fox")
    verbs = ("sees", "likes", "chases", "finds")
    objects = ("the ball", "a tree", "the moon", "some fish")
    state, lines, size = 12345, [], 0

    def pick(options: tuple[str, ...]) -> str:
        nonlocal state
        state = (1103515245 * state + 12345) % 2**31
        return options[(state >> 16) % len(options)]

    while size < chars:
        line = f"{pick(subjects)} {pick(verbs)} {pick(objects)}{pick(('.', '!'))}\n"
        lines.append(line)
        size += len(line)
    return "".join(lines)


def vocabulary(text: str) -> str:
    return "".join(sorted(set(text)))


def block_bounds(length: int) -> list[tuple[int, int]]:
    """[start, end) of the train, validation and test blocks of a text of `length` characters."""
    train_end = length * SPLIT_PERCENT[0] // 100
    val_end = train_end + length * SPLIT_PERCENT[1] // 100
    return [(0, train_end), (train_end, val_end), (val_end, length)]


def _windows(tokens: torch.Tensor, context: int) -> Split:
    n = (len(tokens) - 1) // context  # y needs one character past each window
    x = tokens[: n * context].view(n, context)
    y = tokens[1 : n * context + 1].view(n, context)
    return Split(x.clone(), y.clone())


def make_splits(text: str, context: int, source: str) -> tuple[Split, Split, Split, str]:
    """(train, val, test, vocab) of windows of `context` characters; DataError if a block holds none."""
    if isinstance(context, bool) or not isinstance(context, int) or context < 1:
        raise DataError(f"context={context!r} is invalid. Fix: a positive number of characters (0: default).")
    vocab = vocabulary(text)
    ids = {c: i for i, c in enumerate(vocab)}
    tokens = torch.tensor([ids[c] for c in text], dtype=torch.int64)
    bounds = block_bounds(len(text))
    shortest = min(range(3), key=lambda i: bounds[i][1] - bounds[i][0])
    longest_context = bounds[shortest][1] - bounds[shortest][0] - 1
    if longest_context < context:
        larger = f"a corpus of at least {100 * (context + 1) // min(SPLIT_PERCENT)} characters"
        fix = f"--data.context {longest_context} (or shorter), or {larger}" if longest_context >= 1 else larger
        raise DataError(
            f"corpus {source} ({len(text)} characters) is too small for context {context}: its "
            f"{SPLIT_NAMES[shortest]} block ({SPLIT_PERCENT[shortest]}%) has "
            f"{bounds[shortest][1] - bounds[shortest][0]} characters, and one example needs {context + 1}. "
            f"Fix: {fix}."
        )
    train, val, test = (_windows(tokens[a:b], context) for a, b in bounds)
    return train, val, test, vocab


def load(name: str, data_dir: str | Path | None) -> tuple[str, str]:
    """(text, where it came from) for `chars` or `chars_tiny`."""
    if name == "chars_tiny":
        return tiny_corpus(), "chars_tiny (generated)"
    paths = find_corpus(data_dir)
    if paths is None:
        raise missing_corpus_error(data_dir)
    return read_corpus(paths), " + ".join(map(str, paths))
