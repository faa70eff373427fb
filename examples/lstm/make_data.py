"""Writes the character corpus of the LSTM language model (lstm_lm.yaml) as Caffe's LRCN examples do: HDF5
files of time-major rows, one column per stream, read by HDF5Data with batch_size T (T rows: T x N), a
training and a test split.

Sentences come from a small grammar (seeded, so the corpus is the same every time). Each of the N streams is
a run of sentences ending in '.'; at every position, input_sentence holds a character's index, target_sentence
the next character's and cont_sentence 0 where a sentence starts (the LSTM forgets its state there) and 1
elsewhere. Batches follow each other down the rows, so a stream continues across batches as in Caffe.

    python examples/lstm/make_data.py examples/lstm/data
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

import h5py
import numpy as np

SUBJECTS = ["the cat", "a dog", "the bird", "my friend", "the old man"]
VERBS = ["sat on", "looked at", "ran to", "jumped over", "slept near"]
OBJECTS = ["the mat", "a tree", "the house", "the river", "a red box"]
ALPHABET = sorted(set(" ." + "".join(SUBJECTS + VERBS + OBJECTS)))  # 25 characters: embed_param's input_dim


def sentences(rng: random.Random):
    while True:
        yield f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}."


def stream(rng: random.Random, length: int):
    """(characters, cont) of one stream of `length + 1` characters."""
    text, cont = [], []
    for sentence in sentences(rng):
        text += sentence
        cont += [0] + [1] * (len(sentence) - 1)
        if len(text) > length:
            return text[:length + 1], cont[:length + 1]


def write_split(folder: Path, split: str, rows: int, streams: int, seed: int) -> Path:
    """Writes folder/SPLIT.h5 (rows x streams datasets input_sentence, cont_sentence, target_sentence) and
    folder/SPLIT_h5.txt, the list HDF5Data reads; returns the list file."""
    rng = random.Random(seed)
    index = {c: i for i, c in enumerate(ALPHABET)}
    columns = [stream(rng, rows) for _ in range(streams)]
    chars = np.array([[index[c] for c in text] for text, _ in columns]).T  # (rows + 1) x streams
    cont = np.array([flags for _, flags in columns]).T
    folder.mkdir(parents=True, exist_ok=True)
    with h5py.File(folder / f"{split}.h5", "w") as file:
        file["input_sentence"] = chars[:-1]
        file["cont_sentence"] = cont[:-1]
        file["target_sentence"] = chars[1:]
    (folder / f"{split}_h5.txt").write_text(f"{split}.h5\n")
    return folder / f"{split}_h5.txt"


def write_corpus(folder: Path, streams: int = 8) -> list:
    """The training split (1,600 rows) and a test split of other sentences (400 rows); their list files."""
    return [write_split(folder, "train", 1600, streams, seed=0), write_split(folder, "test", 400, streams, seed=1)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where the .h5 files and their lists go (lstm_lm.yaml reads data/)")
    for path in write_corpus(parser.parse_args().folder):
        print(path)


if __name__ == "__main__":
    main()
