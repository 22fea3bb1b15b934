"""The starting file `lcsynth templates new` writes."""

from __future__ import annotations

_SCAFFOLD = '''\
# Template {name} for the `{method}` method. Jinja is sandboxed; an undefined variable is an error.
# Helpers: truncate_tokens(text, n), chunk(text, i, size=2048), and `meta` (the document's metadata).
name: {name}
method: {method}
description: Ask one question about the document and answer it, as JSON.
version: 1
variables:
  document: {{type: string, description: the document text}}
messages:
  - role: user
    content: |
      {{{{ document }}}}

      Write one question a careful reader of the text above could ask, and answer it from the text.
      Reply with JSON: {{"question": "...", "answer": "..."}}
response_schema:
  type: object
  properties:
    question: {{type: string, minLength: 5}}
    answer: {{type: string, minLength: 1}}
  required: [question, answer]
  additionalProperties: false
parse: json
defaults:
  max_tokens: 256
  temperature: 0.7
'''


def scaffold(name: str, method: str) -> str:
    """YAML text of a new, lint-clean template."""
    return _SCAFFOLD.format(name=name, method=method)
