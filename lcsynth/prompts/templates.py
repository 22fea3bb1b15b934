"""Prompt templates: YAML files with sandboxed Jinja, found on a search path users can extend."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml
from jinja2 import StrictUndefined, TemplateError, UndefinedError
from jinja2.exceptions import SecurityError, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from lcsynth.backends.base import Request
from lcsynth.config import format_validation_error
from lcsynth.errors import ConfigError
from lcsynth.paths import data_dir
from lcsynth.prompts.schemas import check_schema, load_schema
from lcsynth.text.tokens import Tokenizer

# libyaml's loader where PyYAML was built with it (every run reads every template on the search path).
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Names every template may use without declaring them.
HELPERS = frozenset({"truncate_tokens", "chunk", "meta"})


class TemplateMessage(BaseModel):
    """One chat message of a template; `content` is Jinja."""

    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str


class VariableSpec(BaseModel):
    """A declared input of a template."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["string", "integer", "number", "boolean", "object", "array", "any"] = "string"
    default: Any = None
    description: str = ""


class GenerationDefaults(BaseModel):
    """Sampling defaults a template suggests; method parameters may override them."""

    model_config = ConfigDict(extra="forbid")
    max_tokens: int | None = Field(default=None, gt=0)
    temperature: float = Field(default=0.8, ge=0)
    top_p: float = Field(default=0.95, gt=0, le=1)
    stop: list[str] = Field(default_factory=list)


class PromptTemplate(BaseModel):
    """A prompt template file: chat `messages` or a raw `prompt`, plus how to read the answer."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
    method: str
    description: str = ""
    version: int = 1
    variables: dict[str, VariableSpec] = Field(default_factory=dict)
    messages: list[TemplateMessage] | None = None
    prompt: str | None = None
    response_schema: str | dict[str, Any] | None = None
    defaults: GenerationDefaults = Field(default_factory=GenerationDefaults)
    parse: Literal["text", "json", "regex"] = "text"
    pattern: str | None = None
    path: str = ""
    _schema_checked: bool = PrivateAttr(default=False)

    @model_validator(mode="after")
    def _check_shape(self) -> PromptTemplate:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("a template has either `messages` or `prompt`, not both or neither")
        if self.parse == "regex":
            if not self.pattern:
                raise ValueError("parse: regex needs a `pattern` with named groups")
            try:
                compiled = re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression ({exc})") from None
            if not compiled.groupindex:
                raise ValueError("pattern needs at least one named group, e.g. (?P<answer>.*)")
        return self

    def schema(self) -> dict[str, Any] | None:
        """The response schema: inline, a file next to the template, or a built-in one from schemas/."""
        if self.response_schema is None:
            return None
        if isinstance(self.response_schema, dict):
            if not self._schema_checked:  # checking a schema costs more than using it: once per template
                check_schema(self.response_schema, f"{self.path or self.name}: response_schema")
                self._schema_checked = True
            return self.response_schema
        beside = Path(self.path).parent / self.response_schema if self.path else None
        return load_schema(str(beside) if beside and beside.is_file() else self.response_schema)

    def sources(self) -> list[tuple[str, str]]:
        """(label, Jinja source) of every renderable part."""
        if self.prompt is not None:
            return [("prompt", self.prompt)]
        return [(f"message {i} ({m.role})", m.content) for i, m in enumerate(self.messages or [])]

    @cached_property
    def _rendering(self) -> tuple[list[tuple[str, str]], dict[str, Any]]:
        """The parts to render and the declared defaults (a template is not changed once loaded)."""
        defaults = {name: spec.default for name, spec in self.variables.items() if spec.default is not None}
        return self.sources(), defaults

    def render(self, tokenizer: Tokenizer | None = None, **variables: Any) -> RenderedPrompt:
        """Render with declared defaults filled in; every failure is a ConfigError naming file, line, cause."""
        return self.render_with(template_helpers(tokenizer), variables)

    def render_with(self, helpers: Mapping[str, Any], variables: dict[str, Any]) -> RenderedPrompt:
        """`render` with the helpers made already (a run makes them once, for its backend's tokenizer)."""
        sources, defaults = self._rendering
        values = {**helpers, **defaults, **variables}  # a variable wins over a helper
        values.setdefault("meta", {})
        rendered = [(label, self._render_part(label, source, values)) for label, source in sources]
        if self.prompt is not None:
            return RenderedPrompt(prompt=rendered[0][1])
        roles = [m.role for m in self.messages or []]
        pairs = zip(roles, rendered, strict=True)
        return RenderedPrompt(messages=[{"role": role, "content": text} for role, (_, text) in pairs])

    def _render_part(self, label: str, source: str, values: dict[str, Any]) -> str:
        where = f"{self.path or self.name}, {label}"
        try:
            return compile_jinja(source).render(**values)
        except UndefinedError as exc:
            raise ConfigError(f"{where}{_template_line(exc)}: {exc.message} (declare it or pass it)") from None
        except SecurityError as exc:
            raise ConfigError(f"{where}: refused by the sandbox ({exc})") from None
        except TemplateError as exc:
            raise ConfigError(f"{where}{_template_line(exc)}: {exc}") from None
        except (ArithmeticError, LookupError, TypeError, ValueError) as exc:  # e.g. the sandbox's range limit
            raise ConfigError(f"{where}{_template_line(exc)}: {type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class RenderedPrompt:
    """A rendered template: chat messages, or a raw prompt."""

    messages: list[dict[str, str]] | None = None
    prompt: str | None = None


def template_request(template: PromptTemplate, rendered: RenderedPrompt, seed: int, max_tokens: int | None = None,
                     temperature: float | None = None, extra_stop: tuple[str, ...] = (),
                     json_schema: dict[str, Any] | None = None) -> Request:
    """A request for a rendered template: method overrides first, then the template's defaults."""
    defaults = template.defaults
    messages = tuple((m["role"], m["content"]) for m in rendered.messages) if rendered.messages is not None else None
    return Request(
        messages=messages, prompt=rendered.prompt if messages is None else None,
        max_tokens=max_tokens or defaults.max_tokens or 512,
        temperature=defaults.temperature if temperature is None else temperature,
        top_p=defaults.top_p, seed=seed, stop=(*defaults.stop, *extra_stop), json_schema=json_schema,
    )


def _template_line(exc: BaseException) -> str:
    """The template line where a render error happened, from Jinja's rewritten traceback."""
    tb, line = exc.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return f", line {line}" if line else ""


_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)


@lru_cache(maxsize=512)
def compile_jinja(source: str):
    """Compile template source once (the environment is sandboxed and immutable)."""
    template = _ENV.from_string(source)
    # Jinja merges its globals (a ChainMap over the environment's) into every render's context; a plain
    # dict of the same names merges several times faster, and the immutable environment's never change.
    template.globals = dict(template.globals)
    return template


def template_helpers(tokenizer: Tokenizer | None) -> Mapping[str, Any]:
    """Functions available inside templates; token-aware when a tokenizer is given."""

    def encode(text: str) -> list[int]:
        if tokenizer is None:
            raise ConfigError("truncate_tokens/chunk need a tokenizer, and none was given to this render")
        return tokenizer.encode(text)

    def truncate_tokens(text: str, n: int) -> str:
        ids = encode(text)
        return text if len(ids) <= n else tokenizer.decode(ids[:n])  # type: ignore[union-attr]

    def chunk(text: str, i: int, size: int = 2048) -> str:
        ids = encode(text)
        return tokenizer.decode(ids[i * size : (i + 1) * size])  # type: ignore[union-attr]

    return MappingProxyType({"truncate_tokens": truncate_tokens, "chunk": chunk})


def template_dirs(extra: Iterable[str] = ()) -> list[Path]:
    """The search path, lowest priority first: built-ins, then $LCSYNTH_TEMPLATES, then recipe folders."""
    dirs = [data_dir("templates")]
    env = os.environ.get("LCSYNTH_TEMPLATES", "")
    dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs += [Path(p) for p in extra]
    return dirs


def load_template_file(path: Path) -> PromptTemplate:
    """Read and check one template file; every problem is one line naming the file."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read template ({exc.strerror})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a template is a YAML mapping")
    try:
        template = PromptTemplate.model_validate({**data, "path": str(path)})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, str(path))) from None
    for label, source in template.sources():
        try:
            _ENV.parse(source)  # the syntax check; compiling waits for the first render
        except TemplateSyntaxError as exc:
            raise ConfigError(f"{path}, {label}, line {exc.lineno}: {exc.message}") from None
    return template


def scan_templates(extra: Iterable[str] = ()) -> list[PromptTemplate]:
    """Every template on the search path, lowest priority first (overridden ones included)."""
    found = []
    for folder in template_dirs(extra):
        if not folder.is_dir():
            raise ConfigError(f"template folder {folder} does not exist")
        found += [load_template_file(path) for path in sorted(folder.rglob("*.yaml"))]
    return found


def find_templates(extra: Iterable[str] = ()) -> dict[str, PromptTemplate]:
    """All templates by name; a later folder on the search path overrides an earlier one."""
    return {template.name: template for template in scan_templates(extra)}


def get_template(name: str, extra: Iterable[str] = ()) -> PromptTemplate:
    """The template called `name` that wins on the search path."""
    templates = find_templates(extra)
    if name not in templates:
        raise ConfigError(f"template '{name}' not found; known: {', '.join(sorted(templates))}")
    return templates[name]
