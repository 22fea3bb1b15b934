"""What is sent to a model and how its answer is read: templates, their lint and scaffold, schemas, parsing.

Owns `templates` (YAML prompt templates rendered with sandboxed Jinja), `lint`, `scaffold`, `schemas` (JSON
Schemas and validation), `fastcheck` (the compiled "certainly valid" check) and `parsing` (model text to values).
May import `lcsynth.backends`, `lcsynth.text` and the base modules; never methods, out, run or cli.
"""
