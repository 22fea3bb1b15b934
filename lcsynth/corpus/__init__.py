"""The documents a run reads: readers, the demo corpus, screening and fitting, the token store, assembly, retrieval.

Owns `readers` (Document and the corpus readers), `demo` and `demo_qa`, `documents` (screened and fitted
documents), `fitting` (token counting in worker processes), `store` (sentence segments counted once, on disk),
`assemble` (samples built from counted pieces) and `retrieval` (BM25 over the store).
May import `lcsynth.text` and the base modules; never backends, prompts, methods, out, run or cli.
"""
