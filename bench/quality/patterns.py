"""Do JSON-schema patterns break vLLM's structured outputs? The verifiable-QA question request, twice.

`python -m bench.quality.patterns MODEL_DIR CORPUS.jsonl[.xz] [--n 128]` renders lcsynth's
`verifiable/question` template on corpus passages (answer = a number or name picked by lcsynth's own
`answer_candidates`), generates with `StructuredOutputsParams(json=schema)` once with the template's full schema
and once with `decoding_schema(schema)` (patterns left out), and prints the share of outputs that are valid
against the full schema on each side, with three examples of each. Needs vLLM and a GPU.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path


def requests(corpus: Path, n: int, tokenizer: object) -> list[str]:
    """`n` rendered question requests (chat text) over passages of the corpus."""
    import yaml
    from jinja2 import Template

    from bench.quality.corpus import read
    from lcsynth.methods.verifiable import answer_candidates
    from lcsynth.paths import data_dir

    spec = yaml.safe_load((data_dir("templates") / "verifiable" / "question.yaml").read_text(encoding="utf-8"))
    rng = random.Random(0)
    texts, out = [d["text"] for d in read(corpus)], []
    while len(out) < n:
        text = rng.choice(texts)
        start = rng.randrange(max(1, len(text) - 1600))
        passage = text[start : start + 1600]
        candidates = answer_candidates(passage)
        if not candidates:
            continue
        answer = rng.choice(candidates)
        messages = [{"role": m["role"], "content": Template(m["content"]).render(passage=passage, answer=answer)}
                    for m in spec["messages"]]
        out.append(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    return out


def main(argv: list[str] | None = None) -> None:
    """Generate both ways and print the valid shares."""
    parser = argparse.ArgumentParser(prog="python -m bench.quality.patterns")
    parser.add_argument("model")
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--n", type=int, default=128)
    args = parser.parse_args(argv)
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    from lcsynth.backends.decoding import decoding_schema
    from lcsynth.prompts.schemas import load_schema, validation_error

    schema = load_schema("verifiable_question")
    prompts = requests(args.corpus, args.n, AutoTokenizer.from_pretrained(args.model))
    llm = LLM(model=args.model, max_model_len=4096, gpu_memory_utilization=0.3, enforce_eager=True, seed=0)
    result = {}
    for side, decoder_schema in (("full schema", schema), ("patterns left out", decoding_schema(schema))):
        params = [SamplingParams(temperature=0.7, max_tokens=96, seed=i,
                                 structured_outputs=StructuredOutputsParams(json=decoder_schema))
                  for i in range(len(prompts))]
        texts = [o.outputs[0].text for o in llm.generate(prompts, params, use_tqdm=False)]
        valid = []
        for text in texts:
            try:
                valid.append(validation_error(json.loads(text), schema) is None)
            except ValueError:
                valid.append(False)
        result[side] = {"valid": sum(valid), "of": len(texts), "examples": texts[:3]}
        print(json.dumps({side: result[side]}), flush=True)
    print(f"summary: valid questions with patterns {result['full schema']['valid']}/{args.n}, "
          f"without {result['patterns left out']['valid']}/{args.n}")


if __name__ == "__main__":
    main()
