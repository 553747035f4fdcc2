"""`seer-verl` command line: one entry point, one sub-command per job.

    seer-verl prepare [...]          build the SmolLM2 HF folder and the arithmetic dataset (cached)
    seer-verl env [--config cpu]     print the CPU environment (configs/cpu.yaml) as shell exports
    seer-verl check-config [--config-name=grpo_seer] [overrides]  validate a Seer training config, start nothing
    seer-verl bench [key=value ...]  rollout benchmark: stock verl vs Seer policies on the same engines
    seer-verl dispatch-bench         controller overhead: dispatch decision time at 100/1K/10K requests
    seer-verl compare [...] [-- overrides]  verl trainer with stock vs Seer rollout: iteration times, reward
    seer-verl simulate [key=value ...]  paper-scale rollout simulator (stock/divided/seer/seer_sd/oracle)
    seer-verl replay record|table [...]  offline acceptance replay of grouped speculative decoding (Table 2)
    seer-verl faults [--runs 20]     randomized real-engine faults during Seer rollouts: every sample once, identical
    seer-verl lossless [--full]      SD-on vs SD-off samples: two-sample test (and greedy identity with --temperature 0)

A bad setting ends the command with one line naming the key, the value and what is allowed (exit status 2); set
SEER_VERL_DEBUG=1 (or pass --debug) to see the traceback instead.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

from seer_verl.paths import cpu_env

def _env(argv: list[str]) -> int:
    import argparse
    import shlex

    p = argparse.ArgumentParser(prog="seer-verl env", description=_env.__doc__)
    p.add_argument("--config", default="cpu", help="config in configs/ whose Ray env_vars to print (default: cpu)")
    args = p.parse_args(argv)
    for k, v in cpu_env(args.config).items():
        print(f"export {k}={shlex.quote(v)}")
    return 0


_env.__doc__ = "Print the CPU run environment as shell exports: eval \"$(seer-verl env)\""


def _check_config(argv: list[str]) -> int:
    from seer_verl.integration.manager import main

    return main(argv)


def _prepare(argv: list[str]) -> int:
    from seer_verl.prepare.cli import main

    return main(argv)


def _bench(argv: list[str]) -> int:
    from seer_verl.bench.run import main

    # -v / --verbose: Ray, vLLM and verl output on screen instead of the run's bench.log
    return main([("verbose=true" if a in ("-v", "--verbose") else a) for a in argv])


def _compare(argv: list[str]) -> int:
    from seer_verl.train.compare import main

    return main(argv)


def _dispatch_bench(argv: list[str]) -> int:
    from seer_verl.bench.dispatch import main

    return main(argv)


def _replay(argv: list[str]) -> int:
    from seer_verl.speculative_tools.acceptance_replay import main

    return main(argv)


def _lossless(argv: list[str]) -> int:
    from seer_verl.speculative_tools.lossless_check import main

    return main(argv)


def _faults(argv: list[str]) -> int:
    from seer_verl.faults.cli import main

    return main(argv)


def _simulate(argv: list[str]) -> int:
    from seer_verl.sim.cli import main

    return main(argv)


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "prepare": _prepare,
    "env": _env,
    "check-config": _check_config,
    "bench": _bench,
    "dispatch-bench": _dispatch_bench,
    "compare": _compare,
    "replay": _replay,
    "lossless": _lossless,
    "simulate": _simulate,
    "faults": _faults,
}


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "a setting is wrong" (their message names it), not "seer_verl is broken"."""
    errors: list[type[BaseException]] = [ValueError, FileNotFoundError, NotADirectoryError]
    try:
        from omegaconf.errors import OmegaConfBaseException

        errors.append(OmegaConfBaseException)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    try:
        from hydra.errors import HydraException

        errors.append(HydraException)
    except ImportError:  # pragma: no cover - hydra is a dependency
        pass
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("SEER_VERL_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        print(f"seer-verl: unknown command {cmd!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        return int(COMMANDS[cmd](rest) or 0)
    except _user_errors() as exc:
        if debug:
            raise
        msg = " ".join(str(exc).split()) or type(exc).__name__
        print(f"seer-verl {cmd}: error: {msg}\n(SEER_VERL_DEBUG=1 or --debug shows the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
