"""Max |delta| between trilogy and transformers for every supported checkpoint class, both directions.

Runs the cases of tests/test_convert_parity.py (tiny random models, weights perturbed, padded batch, fp32) and
prints the worst difference over every output of each class (logits, hidden states, pooled, ...)::

    python benchmarks/convert_parity.py
    python benchmarks/convert_parity.py --json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests/

import torch  # noqa: E402
import transformers  # noqa: E402
from tests.convert_helpers import perturb  # noqa: E402
from tests.test_convert_parity import CASES, differences, hf_model, load_hf, make_inputs  # noqa: E402

import trilogy  # noqa: E402


def measure(case: str) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        reference = hf_model(case)
        reference.save_pretrained(Path(folder) / "hf")
        ours = trilogy.from_pretrained(Path(folder) / "hf")
        inputs = make_inputs(ours.config)
        hf_to_trilogy = differences(ours, reference, inputs)
        perturb(ours, seed=2)
        ours.save_pretrained(Path(folder) / "ours", format="hf")
        trilogy_to_hf = differences(ours, load_hf(CASES[case][2], Path(folder) / "ours"), inputs)
    return dict(case=case, outputs=sorted(hf_to_trilogy), hf_to_trilogy=max(hf_to_trilogy.values()),
                trilogy_to_hf=max(trilogy_to_hf.values()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.simplefilter("ignore")
    rows = [measure(case) for case in CASES]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, fp32, max |delta| over real positions")
    print(f"{'class':42s} {'HF -> trilogy':>13s} {'trilogy -> HF':>13s}  outputs compared")
    for row in rows:
        print(f"{row['case']:42s} {row['hf_to_trilogy']:13.1e} {row['trilogy_to_hf']:13.1e}  "
              f"{', '.join(row['outputs'])}")


if __name__ == "__main__":
    main()
