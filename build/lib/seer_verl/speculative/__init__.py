"""Adaptive grouped speculative decoding, engine side (paper §3.4): per-group suffix trees of the siblings'
tokens (:mod:`.group_tree`), the grouped draft server shared by the engines (:mod:`.draft_server`), the drafter
vLLM calls every step (:mod:`.proposer`, loaded by :mod:`.worker_ext`), the request tag that names a request's
group (:mod:`.request_tag`), the service-side coordinator (:mod:`.coordinator`) and the settings
(:mod:`.config`). The experiment tools that check it live in :mod:`seer_verl.speculative_tools`."""
