"""`lcsynth view`: a local page to read a run's rows and rejects (server, index, spans, static page)."""
