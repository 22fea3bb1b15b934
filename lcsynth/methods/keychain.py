"""KeyChain (LoongRL): a short QA hidden in a long context behind chains of UUID keys, for GRPO.

The context is distractor spans from the corpus with the QA's evidence placed at a chosen depth. Chains
of UUID pairs `{"k1": "k2"}`, …, `{"kn": "<question>"}` are inserted after distinct sentence ends; the
chain from the given head ends at the real question, every other chain at a decoy. The sample is
checked by code before it is kept: the head resolves uniquely to the real question, no UUID repeats,
no decoy chain reaches it, and the prompt is within tolerance of its target length.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import uuid
from collections.abc import Iterator
from functools import partial
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lcsynth.corpus.assemble import (
    PROBE,
    Piece,
    distractor_pieces,
    join_delta,
    join_tokens,
    place,
    span_piece,
    stored_doc,
    text_piece,
    tidy,
)
from lcsynth.corpus.readers import Document
from lcsynth.corpus.store import segment_counts
from lcsynth.errors import ConfigError, Reject
from lcsynth.methods.base import Method, MethodContext, Record
from lcsynth.methods.keychain_passages import passage_pieces, passage_pool
from lcsynth.methods.keychain_qa import decoy_pool, draw_decoys, guessable, load_qa, sft_answer, warn_small_pool
from lcsynth.prompts.parsing import parse_output
from lcsynth.prompts.templates import template_request
from lcsynth.rewards import normalize_answer
from lcsynth.text.context_gain import encode_prompt
from lcsynth.text.lengths import DepthSpec, LengthSpec

UUID_PATTERN = re.compile(r"^[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}$")
KEY_PATTERNS = {"uuid4": UUID_PATTERN, "hex8": re.compile(r"^[0-9a-f]{8}$")}
_PAIR = re.compile(r'\{("(?:[^"\\]|\\.)*"): ("(?:[^"\\]|\\.)*")\}')
_MARK = "\x00CONTEXT\x00"
_SEPARATOR = "\n\n"


class KeyChainParams(BaseModel):
    """Parameters of the `keychain` method."""

    model_config = ConfigDict(extra="forbid")
    samples_per_document: int = Field(default=1, ge=1)
    qa: str = "demo"  # "demo" (QA read off the demo corpus), "llm" (written from corpus spans), or a JSONL path
    max_items: int | None = Field(default=None, ge=1)
    qa_template: str = "keychain/qa"
    qa_passage_tokens: int = Field(default=384, ge=16)
    qa_max_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0)
    lengths: LengthSpec = Field(default_factory=LengthSpec)
    depth: DepthSpec = Field(default_factory=DepthSpec)
    chains: int | None = Field(default=None, ge=1)  # default: 4 per 1,024 target tokens with hex8 keys, 1 with uuid4
    chain_length: int = Field(default=4, ge=1)
    key_format: Literal["hex8", "uuid4"] = "hex8"  # 8 hex digits (LoongRL's final data) or canonical uuid4 (its first)
    piece_tokens: int = Field(default=512, ge=16)
    template: str = "keychain/prompt"
    recount: bool = False  # tokenize each finished prompt once more (only needed for unusual tokenizers)
    layout: Literal["spans", "passages"] = "spans"  # passages: multi-hop QA files laid out as `Passage i:` blocks
    form: Literal["grpo", "sft"] = "grpo"  # sft: the prompt plus an assistant turn ending in \boxed{gold}
    sft_reasoning: bool = True  # sft: the assistant turn first states the chain of keys it followed
    keep_guessable: bool = False  # keep items whose answer is yes/no, one character, or inside the question

    @model_validator(mode="after")
    def _passages_need_a_file(self) -> KeyChainParams:
        if self.layout == "passages" and not self.qa.endswith(".jsonl"):
            raise ValueError("layout: passages lays out the paragraphs of a QA file; set qa to a .jsonl file")
        return self


def new_key(rng: random.Random, taken: set[str], form: str = "uuid4") -> str:
    """A key unused so far in this sample: a canonical uuid4 string, or 8 hex digits (`hex8`)."""
    while True:
        bits = rng.getrandbits(128)
        value = str(uuid.UUID(int=bits, version=4)) if form == "uuid4" else f"{bits & 0xFFFFFFFF:08x}"
        if value not in taken:
            taken.add(value)
            return value


def pair_text(key: str, value: str) -> str:
    """How one link is written into the text: a space, a one-pair JSON object, a full stop."""
    return f" {{{json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}}}."


def uuid_pairs(text: str, pattern: re.Pattern[str] = UUID_PATTERN) -> dict[str, list[str]]:
    """Every `{"<key>": "value"}` pair in `text` whose key matches `pattern`, as key → values."""
    pairs: dict[str, list[str]] = {}
    for key, value in _PAIR.findall(text):
        key = json.loads(key)
        if pattern.match(key):
            pairs.setdefault(key, []).append(json.loads(value))
    return pairs


def resolve(text: str | dict[str, list[str]], head: str, limit: int,
            pattern: re.Pattern[str] = UUID_PATTERN) -> tuple[list[str], str | None]:
    """Follow key pairs (in `text`, or already parsed) from `head`; (keys visited, final non-key value or None)."""
    pairs = uuid_pairs(text, pattern) if isinstance(text, str) else text
    visited, current = [], head
    while len(visited) <= limit:
        values = pairs.get(current, [])
        if len(values) != 1:
            return visited, None
        visited.append(current)
        if not pattern.match(values[0]):
            return visited, values[0]
        current = values[0]
    return visited, None


def _stopper(segments: list[str], j: int) -> bool:
    """Whether segment `j` ends a sentence (`.`, `?`, `!`) or a line, where LoongRL inserts its pairs.

    A line that ends in a colon (a heading such as `Passage 3:`) is no stopper: its text follows below.
    """
    last = segments[j].rstrip()[-1:]
    return last in ".?!" or (last != ":" and (j + 1 == len(segments) or segments[j + 1][:1] == "\n"))


class KeyChainMethod(Method):
    """GRPO rows whose verifiable answer sits behind a UUID chain in a long context."""

    name = "keychain"
    kind = "grpo"
    Params = KeyChainParams
    params: KeyChainParams

    def __init__(self, params: BaseModel) -> None:
        super().__init__(params)
        self._questions: list[str] = []
        self._passages: list[str] = []
        self.needs_store = self.params.layout == "spans"  # `passages` draw their distractors from the QA set

    def sources(self, ctx: MethodContext) -> Iterator[Document] | None:
        """The QA items: read off the demo corpus (from the store), or from the JSONL file `qa`.

        With `qa: llm` the units run on corpus documents instead, and each writes its own QA pair.
        """
        if self.params.qa == "llm":
            return None
        if self.params.qa == "demo":
            from lcsynth.corpus.demo_qa import demo_qa
            from lcsynth.corpus.store import iter_store

            assert ctx.store is not None
            items = list(demo_qa(Document(d.id, "".join(d.segments)) for d in iter_store(ctx.store)))
            if not items:
                raise ConfigError("methods (keychain).qa: 'demo' reads QA off the demo corpus (corpus.type: demo); "
                                  "give a .jsonl of QA pairs for other corpora")
        elif self.params.qa.endswith(".jsonl"):
            items = list(load_qa(self.params.qa))
        else:
            raise ConfigError(f"methods (keychain).qa: '{self.params.qa}' is not 'demo', 'llm' or a .jsonl file")
        random.Random(f"{ctx.seed}\x1fkeychain-order").shuffle(items)  # a seeded order, never the corpus order
        self._questions = decoy_pool(items)  # decoys come from the whole set, not only the items kept
        self._passages = passage_pool(items)
        warn_small_pool(self._questions, max(self.chain_count(t) for t in self.params.lengths.targets) - 1)
        return iter(items[: self.params.max_items])

    def chain_count(self, target: int) -> int:
        """Chains in a row of `target` tokens: `chains`, else LoongRL's 4 per 1,024 (hex8 keys) or 1 (uuid4 keys)."""
        per_1024 = 4 if self.params.key_format == "hex8" else 1
        return self.params.chains or max(1, per_1024 * target // 1024)

    def decoys(self, rng: random.Random, real: str, count: int) -> list[str]:
        """Questions of other QA items for the decoy chains, distinct while the QA set has enough."""
        decoys = draw_decoys(self._questions, real, count, rng)
        if count and not decoys:
            raise Reject("no_decoy_questions", "the QA set has a single question")
        return decoys

    async def run(self, doc: Document, sample: int, ctx: MethodContext, rng: random.Random) -> list[Record]:
        """Assemble, insert the chains, verify, and lay out the GRPO row."""
        tokenizer = ctx.backend.tokenizer
        seed = rng.randrange(2**31)
        rng = random.Random(seed)
        target = self.params.lengths.pick(rng)
        tolerance = self.params.lengths.tolerance(target)
        chains = self.chain_count(target)
        if self.params.qa == "llm":
            doc, decoys = await self.written_qa(doc, ctx, rng)
            decoys = [rng.choice(decoys) for _ in range(chains - 1)]
        else:
            decoys = self.decoys(rng, doc.meta["question"], chains - 1)
        question, answers = doc.meta["question"], doc.meta["answers"]
        why = None if self.params.keep_guessable else guessable(question, answers)
        if why:
            raise Reject("answer_guessable", f"{why}: {answers[0]}")

        taken: set[str] = set()
        heads = [[new_key(rng, taken, self.params.key_format) for _ in range(self.params.chain_length)]
                 for _ in range(chains)]
        endings = [question, *decoys]
        links = [(chain, hop, keys[hop], keys[hop + 1] if hop + 1 < len(keys) else endings[chain])
                 for chain, keys in enumerate(heads) for hop in range(len(keys))]
        rng.shuffle(links)
        texts = [pair_text(key, value) for _, _, key, value in links]
        link_pieces = [Piece([text], [count], {"link": [chain, hop]})  # counted in one tokenization
                       for text, count, (chain, hop, _, _) in zip(texts, segment_counts(tokenizer, texts), links,
                                                                  strict=True)]

        template = ctx.template(self.params.template)
        before, after, prefix, suffix = self._frame(ctx, template, heads[0][0])
        budget = target - prefix - suffix - sum(p.tokens for p in link_pieces)
        pieces, own, protected, depth = self._layout(doc, ctx, rng, budget)
        own_tokens = [pieces[i].tokens for i in own]
        where = self._insert_links(pieces, link_pieces, protected, rng)
        context = _SEPARATOR.join(p.text for p in pieces)
        messages = ctx.render(template, context=context, head=heads[0][0]).messages or []
        offsets, n_tokens = self._count(ctx, before, after, pieces, messages)
        if abs(n_tokens - target) > tolerance:
            raise Reject("length_out_of_tolerance", f"{n_tokens} tokens for target {target} ± {tolerance}")
        self.verify(context, heads, endings)
        link_at = [offsets[i] + within for i, within in where]
        message, base = next(((m, msg["content"].find(context)) for m, msg in enumerate(messages)
                              if context in msg.get("content", "")), (0, 0))
        piece_chars = list(itertools.accumulate((len(p.text) + len(_SEPARATOR) for p in pieces[:-1]), initial=base))
        link_chars = [base + context.find(piece.text) for piece in link_pieces]
        meta = {
            "method": self.name, "seed": seed, "qa_id": doc.id, "source_doc": doc.meta.get("source_doc"),
            "question": question, "decoy_questions": len(set(decoys)), "layout": self.params.layout,
            "template": f"{template.name}@{template.version}", "target_tokens": target, "n_tokens": n_tokens,
            **({"model": ctx.model_id, "qa_template": doc.meta["qa_template"]} if self.params.qa == "llm" else {}),
            "tolerance": tolerance, "depth": None if depth is None else round(depth, 4),
            "evidence": [{"doc_id": doc.id, "token_offset": offsets[i], "tokens": n, **pieces[i].source,
                          "message": message, "char_span": [piece_chars[i], piece_chars[i] + len(pieces[i].text)]}
                         for i, n in zip(own, own_tokens, strict=True)],
            "evidence_depths": [round(offsets[i] / n_tokens, 4) for i in own],
            "chain": {"head": heads[0][0], "chains": chains, "chain_length": self.params.chain_length,
                      "links": [{"key": key, "chain": chain, "hop": hop, "token_offset": link_at[i], "message": message,
                                 "char_span": [link_chars[i], link_chars[i] + len(link_pieces[i].text)]}
                                for i, (chain, hop, key, _) in enumerate(links)]},
            "distractors": [{**p.source, "token_offset": offsets[i]} for i, p in enumerate(pieces) if i not in own],
        }
        if self.params.form == "sft":  # the answer turn is written by code; `model` names what wrote the QA
            turn = sft_answer(heads[0][0], heads[0], question, answers[0], self.params.sft_reasoning)
            meta = {"model": ctx.model_id if self.params.qa == "llm" else "none", "doc_id": doc.id, **meta}
            return [Record("sft", {"messages": [*messages, {"role": "assistant", "content": turn}]}, meta)]
        return [Record(self.kind, {"prompt": messages, "ground_truth": answers}, meta)]

    def _layout(self, doc: Document, ctx: MethodContext, rng: random.Random,
                budget: int) -> tuple[list[Piece], list[int], set[int], float | None]:
        """The context's pieces within `budget` tokens, the indices of the item's own, the protected ones, the depth.

        `spans`: the evidence at a drawn depth among corpus spans. `passages`: the item's paragraphs among
        other items' paragraphs as numbered passages; its supporting paragraphs are protected from links.
        """
        tokenizer = ctx.backend.tokenizer
        if self.params.layout == "passages":
            pieces, own, supporting = passage_pieces(doc, self._passages, budget, tokenizer, rng)
            return pieces, own, supporting or set(own), None
        assert ctx.store is not None
        evidence = text_piece(doc.text.strip(), tokenizer, {"evidence": doc.id})
        budget -= evidence.tokens
        if budget < self.params.piece_tokens:
            raise Reject("target_too_short", f"{budget + evidence.tokens} tokens leave {budget} for distractors")
        exclude = {doc.id, doc.meta.get("source_doc") or ""}
        estimate = budget // self.params.piece_tokens + 1  # separators between pieces, about one per piece
        separator = join_tokens(tokenizer, _SEPARATOR)
        pieces = distractor_pieces(ctx.store, rng, budget - separator * estimate, self.params.piece_tokens, exclude,
                                   tokenizer)
        depth = self.params.depth.pick(rng)
        at = place(pieces, evidence, depth)
        return pieces, [at], {at}, depth

    async def written_qa(self, doc: Document, ctx: MethodContext, rng: random.Random) -> tuple[Document, list[str]]:
        """Ask the model for a QA pair (and decoys) about a short span of `doc`; the answer must be in the span."""
        assert ctx.store is not None
        stored = stored_doc(ctx.store, doc.id)
        span = tidy(span_piece(stored, rng.randrange(len(stored.segments)), self.params.qa_passage_tokens),
                    ctx.backend.tokenizer)
        template = ctx.template(self.params.qa_template)
        rendered = ctx.render(template, passage=span.text, meta=doc.meta)
        completion = await ctx.complete(template_request(template, rendered, rng.randrange(2**31),
                                                         self.params.qa_max_tokens, self.params.temperature,
                                                         json_schema=template.schema()))
        if completion.finish_reason == "length":
            raise Reject("qa_truncated", raw=completion.text)
        qa = parse_output(completion.text, "json")
        ctx.check(qa, template.schema() or "keychain_qa", "invalid_qa", raw=completion.text)
        if normalize_answer(qa["answer"]) not in normalize_answer(span.text) or not normalize_answer(qa["answer"]):
            raise Reject("answer_not_in_evidence", qa["answer"], raw=completion.text)
        decoys = [d for d in qa["decoys"] if d.strip() != qa["question"].strip()]
        if not decoys:
            raise Reject("no_decoy_questions", "every decoy repeats the question", raw=completion.text)
        item = Document(f"{doc.id}@{span.source['segments'][0]}", span.text,
                        {"question": qa["question"].strip(), "answers": [qa["answer"].strip()], "source_doc": doc.id,
                         "qa_template": f"{template.name}@{template.version}"})
        return item, decoys

    def _count(self, ctx: MethodContext, before: str, after: str, pieces: list[Piece],
               messages: list[dict[str, str]]) -> tuple[list[int], int]:
        """Token offset of each piece in the rendered prompt, and the prompt's exact length.

        Piece counts add up (segments and links meet at sentence ends); what each blank-line join between
        pieces, and the joins with the prompt around the context, add is counted on a small window. With
        `recount`, or a store whose counts do not add up, the offsets are estimates and the length is counted
        by tokenizing the whole prompt.
        """
        tokenizer = ctx.backend.tokenizer
        prompt_encode = partial(encode_prompt, tokenizer)
        at = len(prompt_encode(before)) + join_delta(prompt_encode, before, "", pieces[0].text)
        offsets = []
        for i, piece in enumerate(pieces):
            if i:
                at += join_delta(tokenizer.encode, pieces[i - 1].text, _SEPARATOR, piece.text)
            offsets.append(at)
            at += piece.tokens
        total = at + join_delta(prompt_encode, pieces[-1].text, "", after) + len(prompt_encode(after))
        if self.params.recount or ctx.store is None or not ctx.store.additive:
            total = len(prompt_encode(ctx.backend.chat_template.render(messages, add_generation_prompt=True)))
        return offsets, total

    def _frame(self, ctx: MethodContext, template: Any, head: str) -> tuple[str, str, int, int]:
        """The rendered prompt before and after the context, and about how many tokens each adds."""
        messages = ctx.render(template, context=_MARK, head=head).messages or []
        before, after = ctx.backend.chat_template.render(messages, add_generation_prompt=True).split(_MARK)
        tokenizer = ctx.backend.tokenizer
        probe = len(tokenizer.encode(PROBE))
        return (before, after, len(encode_prompt(tokenizer, before + PROBE)) - probe,
                len(encode_prompt(tokenizer, PROBE + "." + after)) - len(tokenizer.encode(PROBE + ".")))

    def _insert_links(self, pieces: list[Piece], links: list[Piece], protected: set[int],
                      rng: random.Random) -> list[tuple[int, int]]:
        """Put each link after a distinct sentence or line end, outside the `protected` (evidence) pieces.

        Returns, for each link (in the order of `links`), its piece and its token offset within that piece.
        """
        slots = [(i, j) for i, piece in enumerate(pieces) if i not in protected
                 for j in range(len(piece.segments)) if _stopper(piece.segments, j)]
        if len(slots) < len(links):
            raise Reject("too_few_sentences", f"{len(slots)} sentence ends for {len(links)} links")
        chosen = dict(zip(rng.sample(slots, len(links)), range(len(links)), strict=True))
        where = [(0, 0)] * len(links)
        for i, piece in enumerate(pieces):
            segments, counts, at = [], [], 0
            for j, (segment, count) in enumerate(zip(piece.segments, piece.counts, strict=True)):
                segments.append(segment)
                counts.append(count)
                at += count
                if (i, j) in chosen:
                    link = links[chosen[(i, j)]]
                    where[chosen[(i, j)]] = (i, at)
                    segments.append(link.text)
                    counts.append(link.tokens)
                    at += link.tokens
            piece.segments, piece.counts = segments, counts
        return where

    def verify(self, context: str, heads: list[list[str]], endings: list[str]) -> None:
        """Check by code that the chains say what they should; a failure is a Reject, never a bad row."""
        keys = [key for chain in heads for key in chain]
        pattern = KEY_PATTERNS[self.params.key_format]
        pairs = uuid_pairs(context, pattern)
        if sorted(pairs) != sorted(keys) or len(set(keys)) != len(keys) or any(len(v) != 1 for v in pairs.values()):
            raise Reject("chain_unverifiable", "the UUID pairs in the text are not exactly the inserted ones")
        for chain, keys_of_chain in enumerate(heads):
            visited, end = resolve(pairs, keys_of_chain[0], self.params.chain_length, pattern)
            if visited != keys_of_chain or end != endings[chain]:
                raise Reject("chain_unverifiable", f"chain {chain} does not resolve to its question")
            if chain and end == endings[0]:
                raise Reject("chain_unverifiable", f"decoy chain {chain} reaches the real question")
