"""Does lcsynth's data help? Generate with lcsynth, train SmolLM2-135M with TRL, score on independent probes.

Stages (each one command on the GPU machine, each under 10 minutes): `data` (model from the bundled GGUF, corpus
and probe files, lcsynth runs on the vllm and none backends, training mixes), `train` (every arm, side by side
on the one GPU), `eval` (every model on every probe, greedy), `report` (table and JSON). `python -m bench quality
--help` lists them. The probes (`probes.py`) share no template, haystack or answer format with lcsynth's
generators: their haystack is Perl's documentation, while the training corpus is the Linux kernel's and
Python's documentation.
"""
