"""Running a recipe: the unit plan, the ordered runner, resume, the local and Ray executors, live progress.

Owns `runner` (units in flight, committed in order), `units` (units and outcomes as JSON for other processes),
`ray_stages` and `ray_executor` (`--executor ray`), `progress` and `garbage` (collection at checkpoints).
May import everything below it: `lcsynth.out`, `lcsynth.methods`, `lcsynth.prompts`, `lcsynth.backends`,
`lcsynth.corpus`, `lcsynth.text` and the base modules; never `lcsynth.cli`.
"""
