"""Print a short look at a finished run: counts and the first row's question and answer."""

import json
import sys
from pathlib import Path

run = Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/demo")
manifest = json.loads((run / "manifest.json").read_text())
print(f"\n{run}: rows {manifest['counts']['rows']}, rejects {manifest['counts']['rejects']}")
with (run / "sft-00000.jsonl").open() as handle:
    first = json.loads(next(handle))
user, assistant = first["messages"][0]["content"], first["messages"][1]["content"]
print(f"first row ({first['meta']['doc_id']}, {first['meta']['document_tokens']} document tokens):")
print(f"  question: {user.rsplit(chr(10), 1)[-1][:300]}")
print(f"  answer:   {assistant[:300]}")
