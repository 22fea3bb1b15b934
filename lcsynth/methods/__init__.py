"""Methods turn documents into training records; see `base.Method` and `base.MethodContext`.

Owns `base` (the method contract, the context units run in, the method registry), one module per method
(`longmagpie`, `wildlong`, `verifiable`, `template`, `longpo`, `keychain`, `untie_knots`, `nextlong`), `mixing`
(what the LLM-driven methods share) and `attribute_graph` (WildLong's attribute co-occurrence graph).
May import `lcsynth.prompts`, `lcsynth.backends`, `lcsynth.corpus`, `lcsynth.text` and the base modules; never
out, run or cli. Methods do no I/O of their own beyond the context.
"""
