"""The experiment's arms: what each trains on, for how many steps, and its same-compute control.

| arm | stage 1 (continued pretraining, RoPE base raised) | stage 2 (SFT steps) |
|---|---|---|
| `naive_sft` | - | corpus chunks as plain text, the lengths of `lcsynth_sft`'s rows |
| `lcsynth_sft` | - | every written lcsynth SFT pair that passed context_gain (up to half), KeyChain for the rest |
| `gain_off` | - | as `lcsynth_sft`, LongMagpie/LongPO rows drawn without the gain cut |
| `keychain_only`, `longmagpie_only` | - | one method's pairs alone |
| `naive_ext` | corpus chunks at 15K + short chunks | as `naive_sft`, lengths up to 16K |
| `lcsynth_ext` | NExtLong + Untie-the-Knots rows + short chunks | `lcsynth_sft` plus KeyChain at 15K |

Arms of one column take the same number of optimizer steps of the same batch size.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.quality.corpus import read
from bench.quality.mixes import (
    Counter_,
    chars_per_token,
    corpus_chunks,
    gain,
    pair_tokens,
    rows,
    take,
    write,
    written_pairs,
)

ROPE_THETA = 1_000_000.0  # SmolLM2-135M's is 100,000 with 8,192 positions; ProLong-style base raise for 2x+
EXT_POSITIONS = 32768
SHORT_SHARE = 0.4  # of continued-pretraining rows that are short text (ProLong keeps about this much)


def pair_mix(written: Path, built: Path, min_gain: float, max_tokens: int) -> dict[str, list[dict[str, Any]]]:
    """SFT pairs by source: gain-cut and uncut written rows, KeyChain rows up to `max_tokens` and above it."""
    from bench.quality.mixes import sft_pair

    everything = written_pairs(written, None)
    kept = [p for p in everything if p["method"] not in ("longmagpie", "longpo") or (p["gain"] or 0) >= min_gain]
    keychain = [(r["meta"]["target_tokens"], sft_pair(r, "sft")) for r in rows(built, "sft")
                if r["meta"].get("method") == "keychain"]
    return {"kept": kept, "all": everything, "keychain": [p for n, p in keychain if n <= max_tokens],
            "keychain_long": [p for n, p in keychain if n > max_tokens]}


def plan(work: Path, count: Counter_, sft_steps: int, cpt_steps: int, batch: int, seed: int = 0,
         min_gain: float = 0.05) -> dict[str, Any]:
    """Write every arm's data files and training plan under `work`; return a summary of the data."""
    rng = random.Random(seed)
    runs, mixes, arms_dir = work / "runs", work / "mixes", work / "arms"
    corpus = [d["text"] for d in read(work / "corpus" / "train.jsonl")]
    ratio = chars_per_token(corpus, count)
    pairs = pair_mix(runs / "written", runs / "built", min_gain, 8192)
    n_sft = sft_steps * batch
    # every written row that passed (up to half the steps' rows), KeyChain for the rest
    written_rows = take(pairs["kept"], min(len(pairs["kept"]), n_sft // 2), rng)
    sft = written_rows + take(pairs["keychain"], n_sft - len(written_rows), rng)
    nogain_written = take([p for p in pairs["all"] if p["method"] in ("longmagpie", "longpo")],
                          sum(1 for p in sft if p["method"] in ("longmagpie", "longpo")), rng)
    gain_off = [p for p in sft if p["method"] not in ("longmagpie", "longpo")] + nogain_written
    sft_lengths = [min(8000, n + 16) for n in pair_tokens(sft, count)]
    naive = corpus_chunks(corpus, sft_lengths, count, rng, ratio)
    ext_sft = take(sft + pairs["keychain_long"], n_sft, rng)
    naive_ext = corpus_chunks(corpus, [min(16000, n + 16) for n in pair_tokens(ext_sft, count)], count, rng, ratio)
    pretrain = [{"text": r["text"]} for r in rows(runs / "built", "pretrain")]
    n_cpt = cpt_steps * batch
    n_short = int(n_cpt * SHORT_SHARE)
    short = corpus_chunks(corpus, [rng.randrange(256, 2048) for _ in range(n_short)], count, rng, ratio)
    cpt_long = take(pretrain, n_cpt - n_short, rng)
    naive_long = corpus_chunks(corpus, [15000] * len(cpt_long), count, rng, ratio)
    files = {
        "lcsynth_sft": sft, "naive_sft": naive, "gain_off": gain_off, "lcsynth_ext_sft": ext_sft,
        "naive_ext_sft": naive_ext, "lcsynth_cpt": cpt_long + short, "naive_cpt": naive_long + short,
        "keychain_only": take(pairs["keychain"], n_sft, rng),
        "longmagpie_only": take([p for p in pairs["kept"] if p["method"] == "longmagpie"], n_sft, rng),
    }
    sizes = {name: write(mixes / f"{name}.jsonl", rng.sample(rs, len(rs))) for name, rs in files.items()}
    base = str(work / "models" / "untuned")

    def arm(name: str, stages: Sequence[tuple[str, int, int, float]], ext: bool = False) -> None:
        spec = {"base": base, "out": str(work / "models" / name), "batch": batch,
                "rope_theta": ROPE_THETA if ext else None, "max_positions": EXT_POSITIONS if ext else None,
                "stages": [{"data": str(mixes / f"{d}.jsonl"), "steps": s, "max_length": n, "lr": lr}
                           for d, s, n, lr in stages if sizes.get(d)]}
        arms_dir.mkdir(parents=True, exist_ok=True)
        (arms_dir / f"{name}.json").write_text(json.dumps(spec, indent=1), encoding="utf-8")

    lr = 1e-4
    arm("naive_sft", [("naive_sft", sft_steps, 8192, lr)])
    arm("lcsynth_sft", [("lcsynth_sft", sft_steps, 8192, lr)])
    arm("gain_off", [("gain_off", sft_steps, 8192, lr)])
    arm("keychain_only", [("keychain_only", sft_steps, 8192, lr)])
    arm("longmagpie_only", [("longmagpie_only", sft_steps, 8192, lr)])
    arm("naive_ext", [("naive_cpt", cpt_steps, 16384, lr), ("naive_ext_sft", sft_steps, 16384, lr)], ext=True)
    arm("lcsynth_ext", [("lcsynth_cpt", cpt_steps, 16384, lr), ("lcsynth_ext_sft", sft_steps, 16384, lr)], ext=True)
    by_method: dict[str, int] = {}
    for p in sft:
        by_method[p["method"]] = by_method.get(p["method"], 0) + 1
    gains = [g for g in (p.get("gain") for p in pairs["all"]) if g is not None]
    kept_share = round(sum(g >= min_gain for g in gains) / max(1, len(gains)), 3)
    return {"rows": sizes, "lcsynth_sft_by_method": by_method, "pairs_available": {k: len(v) for k, v in pairs.items()},
            "pretrain_rows": len(pretrain), "tokens_per_char": round(ratio, 4), "min_gain": min_gain,
            "gain_measured": len(gains), "gain_kept_share": kept_share, "sft_tokens": sum(sft_lengths)}


__all__ = ["plan", "gain"]
