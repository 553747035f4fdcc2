"""``python -m seer_verl.prepare`` = ``seer-verl prepare``."""

from .cli import main

raise SystemExit(main())
