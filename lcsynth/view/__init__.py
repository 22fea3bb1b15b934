"""`lcsynth view`: a local page to read a run's rows and rejects.

Owns `index` (a run folder's rows and rejects, indexed in the background), `query` (filters and pages),
`spans` (the character spans each method records, laid out for the page), `server` (aiohttp on 127.0.0.1)
and `static/` (the page itself).
May import `lcsynth.out`, `lcsynth.methods` and everything below them; never `lcsynth.run` or `lcsynth.cli`.
"""
