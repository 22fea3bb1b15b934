"""The recipe: one YAML file describing corpus, backend, methods, output and limits."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from lcsynth.errors import ConfigError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*$")
_URL_CREDENTIALS = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@?#]*@", re.I)


def parse_token_count(value: Any) -> Any:
    """Read token counts written as 2048, "32k" or "1m" (k = 1024).

    >>> parse_token_count("32k")
    32768
    """
    if isinstance(value, str):
        match = _SIZE.match(value)
        if not match:
            raise ValueError(f"'{value}' is not a token count (write e.g. 4096, 32k or 1m)")
        number, unit = float(match.group(1)), match.group(2).lower()
        return int(number * {"": 1, "k": 1024, "m": 1024 * 1024}[unit])
    return value


TokenCount = Annotated[int, BeforeValidator(parse_token_count), Field(gt=0)]


class StrictModel(BaseModel):
    """Base of every recipe section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class CorpusSpec(StrictModel):
    """Where documents come from."""

    type: Literal["demo", "jsonl", "parquet", "text_dir", "hf"] = "demo"
    path: str | None = None
    text_field: str = "text"
    id_field: str | None = "id"
    hf_args: dict[str, Any] = Field(default_factory=dict)
    min_chars: int = Field(default=0, ge=0)
    # JSONL lines and text files longer than this are passed over unread and rejected (document_too_large).
    max_document_bytes: Annotated[int | None, BeforeValidator(parse_token_count), Field(gt=0)] = 16 * 1024 * 1024


class PriceSpec(StrictModel):
    """Prices per million tokens, for the cost estimate in the manifest."""

    prompt: float = Field(default=0.0, ge=0)
    completion: float = Field(default=0.0, ge=0)


class BackendSpec(StrictModel):
    """Which model answers, and how to reach it."""

    type: str = "llamacpp"
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    tokenizer: str | None = None
    timeout: float = Field(default=600.0, gt=0)
    context_length: TokenCount | None = None
    max_concurrency: int = Field(default=64, gt=0)
    max_retries: int = Field(default=6, ge=0)
    retry_backoff: float = Field(default=0.5, ge=0)  # first wait in seconds, doubling per retry
    retry_backoff_max: float = Field(default=30.0, ge=0)
    requests_per_minute: float | None = Field(default=None, gt=0)
    tokens_per_minute: float | None = Field(default=None, gt=0)
    structured_output: Literal["json_schema", "json_object", "vllm", "none"] = "json_schema"
    price: PriceSpec | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _no_credentials_in_url(cls, url: str | None) -> str | None:
        if url and _URL_CREDENTIALS.match(url):
            raise ValueError("the URL holds a user name or password, which would be written wherever the URL is "
                             "(manifests, messages); give the key through api_key_env instead")
        return url


class ContextSpec(StrictModel):
    """How documents are fitted into the model's context window."""

    max_document_tokens: TokenCount | None = None
    overflow: Literal["head_tail", "head", "skip"] = "head_tail"


class MethodSpec(BaseModel):
    """One method to run; keys other than `name` are that method's parameters."""

    model_config = ConfigDict(extra="allow")
    name: str

    @property
    def params(self) -> dict[str, Any]:
        """The method's own parameters (everything but `name`)."""
        return dict(self.model_extra or {})


class OutputSpec(StrictModel):
    """Where and how results are written."""

    root: str = "outputs"
    name: str | None = None
    overwrite: bool = True
    resume: bool = True
    shard_rows: int = Field(default=100_000, gt=0)


class CacheSpec(StrictModel):
    """The request cache (sqlite): reruns and later stages reuse earlier answers."""

    enabled: bool = True
    path: str | None = None


class LimitsSpec(StrictModel):
    """Caps on how much a run does."""

    max_documents: int | None = Field(default=None, gt=0)
    max_records: int | None = Field(default=None, gt=0)
    max_in_flight: int = Field(default=16, gt=0)
    # Units in a row (as they finish) whose requests failed after every retry: the endpoint is down, stop.
    max_failures_in_a_row: int | None = Field(default=64, gt=0)
    # Worker processes that count documents' tokens ahead of the run; unset: one where a core is spare.
    token_counting_processes: int | None = Field(default=None, ge=0)


class CardSpec(StrictModel):
    """What the dataset card of `lcsynth push` says that the run itself cannot know."""

    license: str = "other"
    language: list[str] = Field(default_factory=lambda: ["en"])
    pretty_name: str | None = None


class Recipe(StrictModel):
    """A whole run, as read from YAML."""

    seed: int = 0
    corpus: CorpusSpec = Field(default_factory=CorpusSpec)
    backend: BackendSpec = Field(default_factory=BackendSpec)
    context: ContextSpec = Field(default_factory=ContextSpec)
    methods: list[MethodSpec] = Field(min_length=1)
    output: OutputSpec = Field(default_factory=OutputSpec)
    limits: LimitsSpec = Field(default_factory=LimitsSpec)
    cache: CacheSpec = Field(default_factory=CacheSpec)
    filters: list[dict[str, Any]] = Field(default_factory=list)
    templates: list[str] = Field(default_factory=list)
    card: CardSpec = Field(default_factory=CardSpec)

    def run_dir(self) -> Path:
        """The folder this run writes into."""
        return Path(self.output.root) / (self.output.name or "run")

    def cache_path(self) -> Path:
        """The request cache file: shared by every run under output.root unless cache.path says otherwise."""
        return Path(self.cache.path) if self.cache.path else Path(self.output.root) / "cache.sqlite"


def format_validation_error(err: ValidationError, source: str) -> str:
    """Turn pydantic's report into one line: `source: key.path: problem`."""
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    more = len(err.errors()) - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key (check the spelling; see recipes/demo.yaml for the known keys)"
    return f"{source}: {where}: {message}{tail}"


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one `--set a.b.c=value` to the raw recipe; the value is read as YAML."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {assignment!r}: expected key=value, e.g. --set output.name=run1")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: value is not valid YAML ({exc.problem})") from None
    parts = key.strip().split(".")
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        node = _descend(node, part, ".".join(parts[: i + 1]))
    _assign(node, parts[-1], value, key)


def _descend(node: Any, part: str, path: str) -> Any:
    if isinstance(node, list):
        return node[_list_index(node, part, path)]
    if not isinstance(node, dict):
        raise ConfigError(f"--set {path}: cannot descend into a {type(node).__name__}")
    return node.setdefault(part, {})


def _assign(node: Any, part: str, value: Any, path: str) -> None:
    if isinstance(node, list):
        node[_list_index(node, part, path)] = value
    elif isinstance(node, dict):
        node[part] = value
    else:
        raise ConfigError(f"--set {path}: cannot set a key inside a {type(node).__name__}")


def _list_index(node: list, part: str, path: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"--set {path}: '{part}' is not an index of a list of {len(node)} items")
    return int(part)


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe file; every problem becomes a one-line ConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: recipe file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read recipe ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe is a YAML mapping of keys, not a {type(data).__name__}")
    for assignment in overrides or []:
        apply_override(data, assignment)
    return validate_recipe(data, str(path), default_name=path.stem)


def validate_recipe(data: dict[str, Any], source: str, default_name: str = "run") -> Recipe:
    """Validate a raw recipe mapping."""
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None
    if recipe.output.name is None:
        recipe.output.name = default_name
    return recipe
