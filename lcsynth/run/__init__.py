"""Running a recipe: the unit plan, the ordered runner, resume, the local and Ray executors, live progress.

Owns `plan` (units in output order, the method context, the document limit), `runner` (units in flight, committed
in order, checkpoints), `resume` (how a killed run resumes; retries of rejects), `local` (`run_recipe`, the local
executor), `units`, `ray_stages` and `ray_executor` (`--executor ray`), `progress` and `garbage` (collection at
checkpoints).
May import everything below it: `lcsynth.out`, `lcsynth.methods`, `lcsynth.prompts`, `lcsynth.backends`,
`lcsynth.corpus`, `lcsynth.text` and the base modules; never `lcsynth.cli`.
"""
