"""Experiment tools around grouped speculative decoding: lossless checks (:mod:`.lossless` statistics,
:mod:`.lossless_check` the ``seer-verl lossless`` command, :mod:`.sd_samples` one engine's draw) and the offline
acceptance replay (:mod:`.acceptance_replay`, ``seer-verl replay``)."""
