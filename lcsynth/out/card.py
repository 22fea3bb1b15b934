"""The dataset card (README.md) that `lcsynth push` uploads: Hub metadata, provenance, counts, lengths, rejects.

Everything in it comes from the run folder, so the same run gives the same bytes; secrets are redacted from
the recipe before it is shown.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from lcsynth.redaction import redact

SIZE_CATEGORIES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]
KIND_TAGS = {"sft": "sft", "dpo": "dpo", "grpo": "grpo", "pretrain": "pretraining"}
COLUMN_NOTES = {
    "sft": "`messages` (a conversation: user turn with the long context, assistant answer)",
    "dpo": "`prompt`, `chosen`, `rejected` (conversational preference pair; `short_prompt` holds the short-context "
           "prompt where the method has one)",
    "grpo": "`prompt` (conversation) and `ground_truth` (verifiable answer, a list of accepted strings)",
    "pretrain": "`text` (one long training sample)",
}
TRAINER_NOTES = {
    "sft": "`SFTConfig(max_length={max_length})` or more",
    "dpo": "`DPOConfig(max_length={max_length})` or more",
    "grpo": "prompts up to {max_prompt_length} tokens (verl `data.max_prompt_length={max_prompt_length}`; "
            "TRL's `GRPOTrainer` keeps whole prompts)",
    "pretrain": "a sequence length of {max_length} or more (one more where the trainer appends an end-of-text "
                "token, as TRL's `SFTTrainer` does)",
}


def size_category(rows: int) -> str:
    """The Hub's size bucket for a row count.

    >>> size_category(999), size_category(1000), size_category(250_000)
    ('n<1K', '1K<n<10K', '100K<n<1M')
    """
    for bound, name in SIZE_CATEGORIES:
        if rows < bound:
            return name
    return "n>1B"


def card_metadata(manifest: dict[str, Any], counts: dict[str, dict[str, int]], repo_id: str,
                  license_id: str, languages: list[str], pretty_name: str) -> dict[str, Any]:
    """The YAML header: license, languages, task categories, size, tags and one config per row kind."""
    methods = sorted({m["name"] for m in manifest["recipe"]["methods"]})
    tasks = ["text-generation"] + (["question-answering"] if "grpo" in counts else [])
    return {
        "license": license_id,
        "language": languages,
        "pretty_name": pretty_name,
        "task_categories": tasks,
        "size_categories": [size_category(sum(n for splits in counts.values() for n in splits.values()))],
        "tags": ["long-context", "synthetic", "lcsynth", *methods, *(KIND_TAGS[k] for k in counts)],
        "configs": [{"config_name": kind,
                     "data_files": [{"split": split, "path": f"data/{kind}/{split}-*.parquet"} for split in splits]}
                    for kind, splits in counts.items()],
    }


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def render_card(manifest: dict[str, Any], counts: dict[str, dict[str, int]], lengths: dict[str, dict[str, int]],
                settings: dict[str, dict[str, int]], images: dict[str, str], repo_id: str, run_name: str,
                license_id: str, languages: list[str], pretty_name: str | None = None,
                secrets: Iterable[str] = ()) -> str:
    """The whole README.md: YAML metadata, then how to load it, counts, lengths, trainer limits, rejects, recipe."""
    title = pretty_name or repo_id.split("/", 1)[1]
    meta = card_metadata(manifest, counts, repo_id, license_id, languages, title)
    versions = manifest.get("versions", {})
    kinds = list(counts)
    lines = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(), "---", "", f"# {title}", "",
             f"Long-context training rows ({', '.join(kinds)}) made by lcsynth {versions.get('lcsynth', '')} "
             f"from the run `{run_name}` with the model `{manifest['model']}` (seed {manifest['seed']}).", "",
             "## Loading", "", "```python", "from datasets import load_dataset", ""]
    lines += [f'{kind} = load_dataset("{repo_id}", "{kind}")' for kind in kinds]
    lines += ["```", "", "Columns, one config per row kind:", ""]
    lines += [f"- `{kind}`: {COLUMN_NOTES[kind]}, and `meta` (a JSON string: method, source document ids and spans, "
              "token counts, seed)" for kind in kinds]
    lines += ["", "## Rows", ""]
    lines += _table(["config", "split", "rows"], [[k, s, n] for k, splits in counts.items() for s, n in splits.items()])
    lines += ["", "## Token lengths", "",
              f"Tokens per row in the tokenizer of `{manifest['model']}`, as the run recorded them "
              "(the whole row: prompt and answer, a pair's prompt and longer answer, or the text; nearest-rank "
              "percentiles).", ""]
    lines += _table(["config", "rows counted", "min", "median", "p90", "max"],
                    [[k, s["rows"], s["min"], s["median"], s["p90"], s["max"]] for k, s in lengths.items()])
    for kind, path in images.items():
        lines += ["", f"![tokens per row, {kind}]({path})"]
    uncounted = [kind for kind in kinds if kind not in lengths]
    if uncounted:
        lines += ["", f"Rows of {', '.join(uncounted)} record no token count; "
                  "`lcsynth check RUN_DIR --tokenizer T` counts them with a given tokenizer."]
    lines += ["", "## Trainer settings", "", "Trainers cut longer rows silently; with these limits none is cut:", ""]
    lines += [f"- {kind}: {TRAINER_NOTES[kind].format(**limits)}" for kind, limits in settings.items()]
    lines += ["", "`lcsynth check RUN_DIR --tokenizer T --max-length N` recounts the rows with another tokenizer.",
              "", "## Rejects", ""]
    rejects = manifest["counts"]["rejects"]
    if rejects:
        lines += ["Units that produced no row, by reason:", ""]
        lines += _table(["reason", "count"], [[r, rejects[r]] for r in sorted(rejects, key=lambda r: (-rejects[r], r))])
    else:
        lines += ["None."]
    lines += ["", "## How it was made", "", f"- model: `{manifest['model']}`",
              f"- methods: {', '.join(sorted({m['name'] for m in manifest['recipe']['methods']}))}",
              "- packages: " + ", ".join(f"{name} {v}" for name, v in sorted(versions.items())),
              "- run files (sha256): " + ", ".join(f"`{name}` {f['sha256'][:16]}…"
                                                     for name, f in sorted(manifest.get("files", {}).items())),
              "", "The recipe (credentials redacted):", "", "```yaml",
              yaml.safe_dump(redact(manifest["recipe"], secrets), sort_keys=False, allow_unicode=True).rstrip(),
              "```", ""]
    return "\n".join(lines)
