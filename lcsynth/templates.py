"""Prompt templates: YAML files with sandboxed Jinja, found on a search path users can extend."""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from jinja2 import StrictUndefined, UndefinedError
from jinja2.exceptions import SecurityError, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lcsynth.config import format_validation_error
from lcsynth.errors import ConfigError
from lcsynth.paths import data_dir


class TemplateMessage(BaseModel):
    """One chat message of a template; `content` is Jinja."""

    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str


class GenerationDefaults(BaseModel):
    """Sampling defaults a template suggests; recipes may override them."""

    model_config = ConfigDict(extra="forbid")
    max_tokens: int = Field(default=512, gt=0)
    temperature: float = Field(default=0.8, ge=0)
    top_p: float = Field(default=0.95, gt=0, le=1)
    stop: list[str] = Field(default_factory=list)


class PromptTemplate(BaseModel):
    """A prompt template file."""

    model_config = ConfigDict(extra="forbid")
    name: str
    method: str
    description: str = ""
    version: int = 1
    variables: dict[str, Any] = Field(default_factory=dict)
    messages: list[TemplateMessage] = Field(min_length=1)
    response_schema: str | None = None
    defaults: GenerationDefaults = Field(default_factory=GenerationDefaults)
    parse: Literal["text", "json"] = "text"
    path: str = ""

    def render(self, **variables: Any) -> list[dict[str, str]]:
        """Render every message with `variables`; a missing variable is a ConfigError naming it."""
        out = []
        for index, message in enumerate(self.messages):
            try:
                content = _compile(message.content).render(**variables)
            except UndefinedError as exc:
                raise ConfigError(f"template {self.name} ({self.path}), message {index}: {exc.message}") from None
            except SecurityError as exc:
                raise ConfigError(f"template {self.name}: refused unsafe access ({exc})") from None
            out.append({"role": message.role, "content": content})
        return out


_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)


@lru_cache(maxsize=512)
def _compile(source: str):
    return _ENV.from_string(source)


def template_dirs(extra: Iterable[str] = ()) -> list[Path]:
    """The search path, lowest priority first: built-ins, then $LCSYNTH_TEMPLATES, then recipe folders."""
    dirs = [data_dir("templates")]
    env = os.environ.get("LCSYNTH_TEMPLATES", "")
    dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs += [Path(p) for p in extra]
    return dirs


def load_template_file(path: Path) -> PromptTemplate:
    """Read and check one template file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a template is a YAML mapping")
    try:
        template = PromptTemplate.model_validate({**data, "path": str(path)})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, str(path))) from None
    for index, message in enumerate(template.messages):
        try:
            _compile(message.content)
        except TemplateSyntaxError as exc:
            raise ConfigError(f"{path}: message {index}, line {exc.lineno}: {exc.message}") from None
    return template


def find_templates(extra: Iterable[str] = ()) -> dict[str, PromptTemplate]:
    """All templates by name; a later folder on the search path overrides an earlier one."""
    found: dict[str, PromptTemplate] = {}
    for folder in template_dirs(extra):
        if not folder.is_dir():
            raise ConfigError(f"template folder {folder} does not exist")
        for path in sorted(folder.rglob("*.yaml")):
            template = load_template_file(path)
            found[template.name] = template
    return found


def get_template(name: str, extra: Iterable[str] = ()) -> PromptTemplate:
    """The template called `name` that wins on the search path."""
    templates = find_templates(extra)
    if name not in templates:
        raise ConfigError(f"template '{name}' not found; known: {', '.join(sorted(templates))}")
    return templates[name]
