"""`python -m bench quality STAGE [options]`: corpus (here), then data, train, eval, report (GPU machine).

The GPU commands, in order, each under 10 minutes on one H200 (see README, "Does the data help?"):
    python -m bench quality data   --corpus .gpu/quality
    python -m bench quality train
    python -m bench quality eval
    python -m bench quality report --out "$OUT"
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    """Parse the stage and its options, then run it."""
    from bench.quality import stages

    parser = argparse.ArgumentParser(prog="python -m bench quality", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("corpus", "data", "train", "eval", "report"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/quality"), help="working folder (GPU machine)")
    parser.add_argument("--corpus", type=Path, default=Path(".gpu/quality"),
                        help="folder of train.jsonl.xz and haystack.jsonl.xz (written by the corpus stage)")
    parser.add_argument("--debs", type=Path, default=Path(".gpu/debs"), help="corpus stage: where the .debs go")
    parser.add_argument("--per-cell", type=int, default=100, help="probe items per task and length")
    parser.add_argument("--sft-steps", type=int, default=150)
    parser.add_argument("--cpt-steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=8, help="rows per optimizer step")
    parser.add_argument("--max-documents", type=int, default=1400, help="documents the written run reads")
    parser.add_argument("--written-set", action="append", default=[], metavar="KEY=VALUE",
                        help="data: a recipe setting for the written run (e.g. backend.type=openai)")
    parser.add_argument("--built-set", action="append", default=[], metavar="KEY=VALUE",
                        help="data: a recipe setting for the built run")
    parser.add_argument("--only", nargs="*", help="train/eval: only these arms or models")
    parser.add_argument("--budget", type=float, default=540.0, help="train/eval: seconds before what runs is killed")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "bench/results")))
    args = parser.parse_args(argv)
    if args.stage == "corpus":
        from bench.quality.corpus import build

        print(json.dumps(build(args.corpus, args.debs)))
    elif args.stage == "data":
        stages.data(args.work, args.corpus, args.per_cell, args.sft_steps, args.cpt_steps, args.batch,
                    args.max_documents, tuple(args.written_set), tuple(args.built_set))
    elif args.stage == "train":
        stages.train(args.work, args.only, args.budget)
    elif args.stage == "eval":
        stages.evaluate(args.work, args.only, args.budget)
    else:
        stages.report(args.work, args.out)
