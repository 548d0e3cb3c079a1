#!/usr/bin/env python3
"""Load a folder written by sae_export with SAELens 6 and compare its activations with ours.

    python3 test/golden/check_saelens_export.py FOLDER INPUTS.txt OURS.txt

INPUTS.txt: one activation vector per line (space-separated floats); OURS.txt: sae_encode's
output for each line, the same way.  Prints the largest relative difference and exits 1 if it
is above 1e-5.  Needs sae-lens (pip install sae-lens); not part of the test suite.
"""
import sys

import numpy as np
import torch
from sae_lens import SAE


def rows(path):
    return np.array([[float(v) for v in line.split()] for line in open(path) if line.strip()],
                    dtype=np.float32)


def main(folder, inputs, ours):
    sae = SAE.load_from_disk(folder, device="cpu")
    x = torch.from_numpy(rows(inputs))
    with torch.no_grad():
        theirs = sae.encode(x).numpy()
    mine = rows(ours)
    rel = np.abs(theirs - mine).max() / max(np.abs(theirs).max(), 1e-30)
    print(f"SAELens {type(sae).__name__} from {folder}: d_in {sae.cfg.d_in}, d_sae {sae.cfg.d_sae}, "
          f"hook {sae.cfg.metadata.hook_name}; {x.shape[0]} inputs, "
          f"{int((theirs > 0).sum())} active entries (ours {int((mine > 0).sum())}); "
          f"max relative difference {rel:.2e}")
    return 0 if rel <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
