"""seer_verl's Hydra configs (YAML files; this file only makes the folder a package, so that Hydra finds
them as ``pkg://seer_verl.configs`` and the wheel ships them)."""
