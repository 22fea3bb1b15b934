"""WildLong: instructions grounded in real user requests, combined anew by walks on an attribute graph.

Before the units run (`prepare`): the model describes each seed request as task attributes (stage 1,
validated against `wildlong_meta.json`), and the attributes' co-occurrence graph is built and saved
with the run (stage 2). Each unit then walks the graph to a combination of attributes, has the model
write an instruction from it, adapt that instruction to one or several corpus documents, and answer
it with the documents in context (stage 3): one SFT row.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import networkx as nx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from lcsynth.config import TokenCount
from lcsynth.corpus.assemble import span_piece
from lcsynth.corpus.readers import Document, jsonl_objects
from lcsynth.corpus.store import iter_store
from lcsynth.errors import ConfigError, InputError, Reject
from lcsynth.methods.attribute_graph import (
    attributes_of,
    build_graph,
    describe,
    load_graph,
    path_attributes,
    random_walk,
    save_graph,
)
from lcsynth.methods.base import Method, MethodContext, Record
from lcsynth.methods.mixing import checked_answer, mixed_documents, numbered_documents
from lcsynth.prompts.parsing import parse_output
from lcsynth.prompts.templates import RenderedPrompt, template_request
from lcsynth.text.quality import copies_source

_MARKUP_TOKENS = 96
GRAPH_FOLDER = "wildlong"


class WildLongParams(BaseModel):
    """Parameters of the `wildlong` method."""

    model_config = ConfigDict(extra="forbid")
    samples_per_document: int = Field(default=1, ge=1)
    seeds: str | None = None  # JSONL of real user requests; none: written by the model from corpus openings
    seed_requests: int = Field(default=16, ge=1)  # how many to write when `seeds` is not given
    seed_passage_tokens: TokenCount = 512
    graph: str | None = None  # reuse a saved graph (graph.json / graph.graphml) and skip stages 1 and 2
    min_count: int = Field(default=1, ge=1)  # attribute values seen fewer times are left out of the graph
    path_length: tuple[int, int] = (3, 6)  # a walk gathers L ~ U{min..max} attributes
    restart: float = Field(default=0.15, ge=0, lt=1)
    frequency_power: float = Field(default=0.5, ge=0, le=1)  # below 1 lifts rare attribute values
    start_field: str = "task_type"
    documents: int = Field(default=1, ge=1, le=16)  # a unit reads n ~ U{1..documents} documents
    seed_template: str = "wildlong/seed"
    meta_template: str = "wildlong/meta"
    instruction_template: str = "wildlong/instruction"
    adapt_template: str = "wildlong/adapt"
    answer_template: str = "wildlong/answer"
    answer_max_tokens: int = Field(default=512, gt=0)
    generation_max_tokens: int = Field(default=320, gt=0)  # for seeds, attributes and instructions
    temperature: float | None = Field(default=None, ge=0)
    max_repetition: float = Field(default=0.5, gt=0, le=1)

    @field_validator("path_length")
    @classmethod
    def _ordered(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not 1 <= value[0] <= value[1]:
            raise ValueError("path_length is [min, max] with 1 <= min <= max")
        return value


def read_seed_requests(path: str) -> list[str]:
    """User requests from a JSONL file: `text`, `instruction`, `prompt`, or the first user turn of `messages`."""
    requests = []
    for line, row in jsonl_objects(Path(path)):
        messages = row.get("messages") or row.get("conversation") or []
        first_user = next((m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"),
                          None)
        text = row.get("text") or row.get("instruction") or row.get("prompt") or first_user
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{path}, line {line}: no request (give text, instruction, prompt or messages)")
        requests.append(text.strip())
    if not requests:
        raise InputError(f"{path}: no seed requests")
    return requests


class WildLongMethod(Method):
    """SFT rows from attribute combinations sampled on a co-occurrence graph of real requests."""

    name = "wildlong"
    kind = "sft"
    Params = WildLongParams
    params: WildLongParams
    needs_store = True

    def __init__(self, params: BaseModel) -> None:
        super().__init__(params)
        self.graph: nx.Graph | None = None

    def reserved_tokens(self) -> int:
        """The instruction and answer budgets plus prompt words and chat markup."""
        return self.params.generation_max_tokens + self.params.answer_max_tokens + _MARKUP_TOKENS

    async def prepare(self, ctx: MethodContext, run_dir: Path) -> list[tuple[dict[str, Any], Reject]]:
        """Stages 1 and 2: extract attributes of the seed requests and build the graph (or load a saved one).

        Returns the seed requests that yielded nothing, as rejects. A resumed run reads the graph it saved.
        """
        folder = run_dir / GRAPH_FOLDER
        if self.params.graph or (folder / "graph.json").exists():
            self.graph = load_graph(Path(self.params.graph) if self.params.graph else folder / "graph.json")
            self._check_graph()
            return []
        requests, rejects = await self._seed_requests(ctx)
        tables: list[dict[str, Any]] = []
        template = ctx.template(self.params.meta_template)
        for i, request in enumerate(requests):
            key = {"method": self.name, "doc_id": f"seed:{i}", "sample": None, "stage": "attributes"}
            rendered = ctx.render(template, request=request)
            try:
                completion = await ctx.complete(template_request(
                    template, rendered, i, self.params.generation_max_tokens, self.params.temperature,
                    json_schema=template.schema()))
                if completion.finish_reason == "length":
                    raise Reject("attributes_truncated", raw=completion.text)
                extracted = parse_output(completion.text, "json")
                ctx.check(extracted, template.schema() or "wildlong_meta", "invalid_attributes", raw=completion.text)
            except Reject as reject:
                reject.request_hash = ctx.last_request_hash
                rejects.append((key, reject))
                continue
            tables.append({"seed": i, "request": request, "attributes": attributes_of(extracted)})
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "attributes.jsonl").open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(t, ensure_ascii=False) + "\n" for t in tables)
        self.graph = build_graph((t["attributes"] for t in tables), self.params.min_count)
        self._check_graph()
        save_graph(self.graph, folder)
        return rejects

    def _check_graph(self) -> None:
        assert self.graph is not None
        if not any(field == self.params.start_field for _, field in self.graph.nodes(data="field")):
            raise ConfigError(f"methods (wildlong): the attribute graph has no '{self.params.start_field}' value "
                              f"({self.graph.number_of_nodes()} nodes); give more or other seed requests")

    async def _seed_requests(self, ctx: MethodContext) -> tuple[list[str], list[tuple[dict[str, Any], Reject]]]:
        """The seed requests: read from `seeds`, or written by the model at an empty user turn over corpus openings."""
        if self.params.seeds:
            return read_seed_requests(self.params.seeds), []
        assert ctx.store is not None
        template = ctx.template(self.params.seed_template)
        requests: list[str] = []
        rejects = []
        for i, stored in enumerate(iter_store(ctx.store)):
            if i == self.params.seed_requests:
                break
            opening = span_piece(stored, 0, self.params.seed_passage_tokens).text.strip()
            context = ctx.render(template, document=opening).messages or []
            prompt = ctx.backend.chat_template.self_query_prompt(context)
            completion = await ctx.complete(template_request(template, RenderedPrompt(prompt=prompt), i, None,
                                                             self.params.temperature, ("\n",)))
            request = completion.text.strip().split("\n", 1)[0].strip()
            if len(request.split()) < 3:
                key = {"method": self.name, "doc_id": f"seed:{i}", "sample": None, "stage": "seed_request"}
                reject = Reject("seed_request_too_short", stored.id, raw=completion.text)
                reject.request_hash = ctx.last_request_hash
                rejects.append((key, reject))
                continue
            requests.append(request)
        return requests, rejects

    async def run(self, doc: Document, sample: int, ctx: MethodContext, rng: random.Random) -> list[Record]:
        """Stage 3: walk to attributes, write and adapt the instruction, answer it over the documents."""
        assert self.graph is not None, "prepare() builds the graph before units run"
        seed = rng.randrange(2**31)
        rng = random.Random(seed)
        low, high = self.params.path_length
        path = random_walk(self.graph, rng, rng.randint(low, high), self.params.start_field, self.params.restart,
                           self.params.frequency_power)
        if len(path) < low:
            raise Reject("walk_too_short", f"{len(path)} attributes reachable, want at least {low}")
        attributes = describe(path_attributes(self.graph, path))
        ids, documents = self._documents(doc, ctx, rng)

        drafting = ctx.template(self.params.instruction_template)
        draft = await self._instruction(ctx, drafting, rng, "invalid_draft", attributes=attributes)
        adapting = ctx.template(self.params.adapt_template)
        instruction = await self._instruction(ctx, adapting, rng, "invalid_instruction", documents=documents,
                                              attributes=attributes, draft=draft)
        if copies_source(instruction, documents):
            raise Reject("instruction_copies_document", raw=instruction)
        answering = ctx.template(self.params.answer_template)
        rendered = ctx.render(answering, documents=documents, instruction=instruction, meta=doc.meta)
        answered = await ctx.complete(template_request(answering, rendered, rng.randrange(2**31),
                                                       self.params.answer_max_tokens, self.params.temperature))
        answer = checked_answer(answered, "answer", self.params.max_repetition)
        meta = {
            "method": self.name, "model": ctx.model_id, "seed": seed, "doc_id": doc.id, "sample": sample,
            "templates": [f"{t.name}@{t.version}" for t in (drafting, adapting, answering)],
            "meta_path": path_attributes(self.graph, path), "instruction_raw": draft,
            "n_docs": len(ids), "documents": ids, "prompt_tokens": answered.usage.prompt_tokens,
        }
        messages = [*(rendered.messages or []), {"role": "assistant", "content": answer}]
        return [Record(self.kind, {"messages": messages}, meta)]

    async def _instruction(self, ctx: MethodContext, template: Any, rng: random.Random, reason: str,
                           **variables: Any) -> str:
        """Render, ask for `{"instruction": ...}` under the template's schema, and return the instruction."""
        completion = await ctx.complete(template_request(
            template, ctx.render(template, **variables), rng.randrange(2**31), self.params.generation_max_tokens,
            self.params.temperature, json_schema=template.schema()))
        if completion.finish_reason == "length":
            raise Reject(f"{reason.removeprefix('invalid_')}_truncated", raw=completion.text)
        parsed = parse_output(completion.text, "json")
        ctx.check(parsed, template.schema() or "wildlong_instruction", reason, raw=completion.text)
        return " ".join(parsed["instruction"].split())

    def _documents(self, doc: Document, ctx: MethodContext, rng: random.Random) -> tuple[list[str], str]:
        """The unit's document alone, or with other corpus documents under numbered headers (multi-document)."""
        if self.params.documents == 1:
            return [doc.id], doc.text
        parts = mixed_documents(doc, ctx, rng, self.params.documents, header_tokens=8)  # "Document i:" headers
        if len(parts) == 1:
            return [doc.id], doc.text
        return [i for i, _ in parts], numbered_documents([text for _, text in parts])
