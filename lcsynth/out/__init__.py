"""What a run leaves behind and what is made of it: shards, filters, manifest, report, export, the card, the Hub.

Owns `sink` (RunWriter: sharded rows, rejects, checkpoint snapshots), `rows` (reading rows back), `filters` (row
filters at commit), `runfolder` (the folder's lock and the run it replaces), `manifest`, `timeline`, `report`,
`export` (TRL / verl / Parquet and `load`), `card` (the dataset card) and `hub` (`lcsynth push`).
May import `lcsynth.methods`, `lcsynth.prompts`, `lcsynth.backends`, `lcsynth.corpus`, `lcsynth.text` and the base
modules; never `lcsynth.run` or `lcsynth.cli`.
"""
