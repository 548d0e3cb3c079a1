#!/usr/bin/env python3
"""
make_packer_fixtures.py -- expected contexts for src/core/packer.c, from
SAELens's own concat_and_batch_sequences (sae_lens.tokenization_and_batching).

Run from the repository root (needs sae-lens and torch from PyPI; the tests
only read what it writes):

    python3 test/golden/make_packer_fixtures.py

Writes test/fixtures/packer/cases.txt: for each case a header line
"case <context_size> <begin> <separator> <n_docs>" (-1 = None), then one
line per document (its tokens, possibly empty), then "contexts <n>" and one
line per expected context.  Documents are seeded random token runs over a
small alphabet in which 0 plays BOS; some documents start with 0, some are
empty, some are longer than a context.
"""
import random

import sae_lens
import torch
from sae_lens.tokenization_and_batching import concat_and_batch_sequences


def main():
    rng = random.Random(1234)
    lines = []
    settings = [(16, 0, 0), (16, 0, -1), (16, -1, 0), (7, 0, 0), (2, 0, 0), (5, -1, -1), (16, 0, 3)]
    for ctx, begin, sep in settings:
        for _ in range(4):
            docs = []
            for _ in range(rng.randint(1, 30)):
                n = rng.choice([0, 1, 2, 3, 5, 8, 15, 16, 17, 30, 40])
                doc = [rng.randint(1, 9) for _ in range(n)]
                if doc and rng.random() < 0.3:
                    doc[0] = 0
                docs.append(doc)
            out = list(concat_and_batch_sequences(
                iter(torch.tensor(d, dtype=torch.long) for d in docs if len(d) > 0),
                context_size=ctx,
                begin_batch_token_id=None if begin < 0 else begin,
                begin_sequence_token_id=None,
                sequence_separator_token_id=None if sep < 0 else sep))
            lines.append(f"case {ctx} {begin} {sep} {len(docs)}")
            lines.extend(" ".join(map(str, d)) for d in docs)
            lines.append(f"contexts {len(out)}")
            lines.extend(" ".join(str(int(t)) for t in c) for c in out)
    with open("test/fixtures/packer/cases.txt", "w") as f:
        f.write(f"# made by test/golden/make_packer_fixtures.py with sae-lens {sae_lens.__version__}\n")
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
