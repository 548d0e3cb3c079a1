#!/usr/bin/env python3
"""
make_dataset_fixtures.py -- small token dataset files for the pg_regress
test of sae_load_dataset_file (sql/sae_12_lm_train.sql), in each format it
reads, plus broken ones.  Python standard library only; run from the
repository root:

    python3 test/golden/make_dataset_fixtures.py

Token ids are below 1000 (the fixture models' vocabulary; 0 is BOS/EOS).
"""
import json
import random
import struct

OUT = "test/fixtures/datasets"
NAMES = ["Tom", "Lily", "Ben", "Mia", "Sam", "Anna"]
THINGS = ["ball", "cat", "tree", "boat", "cake", "kite"]


def story(rng):
    a, b = rng.sample(NAMES, 2)
    t = rng.choice(THINGS)
    return (f"Once upon a time, {a} had a {t}. {a} liked to play with {b}. "
            f"One day the {t} was lost, and {b} helped {a} find it. They were happy.")


def main():
    rng = random.Random(7)
    stories = [story(rng) for _ in range(60)]
    with open(f"{OUT}/stories.jsonl", "w") as f:
        for s in stories:
            f.write(json.dumps({"text": s}) + "\n")
    with open(f"{OUT}/stories.txt", "w") as f:
        for s in stories:
            f.write(s + "\n\n")
    with open(f"{OUT}/tokens.jsonl", "w") as f:
        for _ in range(20):
            f.write(json.dumps({"input_ids": [0] + [rng.randrange(1, 1000) for _ in range(40)]}) + "\n")
    with open(f"{OUT}/tokens.u16", "wb") as f:
        ids = []
        for _ in range(30):
            ids += [rng.randrange(1, 1000) for _ in range(rng.randrange(5, 30))] + [0]
        f.write(struct.pack(f"<{len(ids)}H", *ids))
    # broken files
    with open(f"{OUT}/bad_no_text.jsonl", "w") as f:
        f.write(json.dumps({"text": stories[0]}) + "\n" + json.dumps({"title": "no text here"}) + "\n")
    with open(f"{OUT}/bad_json.jsonl", "w") as f:
        f.write(json.dumps({"text": stories[0]}) + "\n{\"text\": \"unterminated\n")
    with open(f"{OUT}/bad_vocab.jsonl", "w") as f:
        f.write(json.dumps({"input_ids": [0] + [5] * 30 + [1000] + [6] * 10}) + "\n")
    with open(f"{OUT}/bad_short.jsonl", "w") as f:
        f.write(json.dumps({"input_ids": [0, 1, 2]}) + "\n")
    with open(f"{OUT}/bad_odd.u16", "wb") as f:
        f.write(b"\x01\x00\x02")


if __name__ == "__main__":
    main()
