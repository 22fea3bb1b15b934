"""Text as a model sees it: tokenizers and their piece cache, chat templates, target lengths, cheap quality checks.

Owns `tokens` (the Tokenizer protocol, GGUF and HF tokenizers, `fit_tokens`: the cut of a text to a token budget),
`pieces`, `chat`, `lengths`, `quality` and `context_gain` (what a row's long-context dependency is scored on).
May import only the base modules (`lcsynth.errors`, `lcsynth.config`, ...); nothing above it.
"""
