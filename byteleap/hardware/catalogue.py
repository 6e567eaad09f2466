"""The GPU model catalogue: an NVML name -> one canonical model, with its figures (SPEC 4.5).

A proof of computation is not a proof of hardware. To tell "one fast card answering two claims"
from "two honest cards", the validator must know how fast each claimed card *should* be, so this
table gives every supported model:

- its dense TF32 peak, from which a challenge is sized (``backend_flops``);
- the dense peak of its fastest format that computes our integer product *exactly*, against which
  a throughput is judged impossible (1.1 x that peak is fraud). The challenge's entries are
  integers in ``[-15, 15]`` and every partial sum is an integer below 2**24, so int8 inputs with
  int32 accumulation give the identical product: an optimised honest worker may use int8 tensor
  cores, and the cap must allow for it. FP8 is not counted: its accumulation is not guaranteed to
  be exact;
- its memory sizes and compute capability, which must agree with what the worker reports.

Names are matched by *tokens*, never substrings, so that ``H100`` cannot match inside ``GH200``
and ``L4`` cannot match ``L40``. Each model states the tokens a name must contain and those it
must not; a name that matches none or several models is :data:`UNKNOWN`, because guessing would
let a miner pick the most flattering model. Memory variants of one product (A100 40 GB / 80 GB)
share one model id: their compute figures are the same, and memory is checked against every
variant's size.

Pure: the standard library only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

TERA = 1e12
#: model id of a name that matches no model, or several
UNKNOWN = "unknown"
#: model id of a NumPy CPU pseudo-device
CPU_MODEL = "cpu"
#: the uuid prefix of a CPU pseudo-device (NVML's own uuids start with "GPU-" or "MIG-")
CPU_UUID_PREFIX = "CPU-"

#: NVML reports a little less memory than the nominal size (the driver reserves some, and "GB" on
#: a datasheet is sometimes 10^9 bytes): an L40S's 48 GB show as 46068 MiB (0.937), a T4's 16 GB
#: as 15360 MiB (0.9375). The floor leaves room for that and nothing near the next size down.
#: Percentages, so that the bounds are compared in exact integer arithmetic.
MEMORY_LOW_PERCENT = 90
#: a card never reports more than its nominal memory; 1% of slack for rounding
MEMORY_HIGH_PERCENT = 101

#: the formats an exact peak may be quoted in
EXACT_FORMATS = frozenset({"int8", "fp16"})

#: brand words that carry no model information and come and go between driver versions
#: ("Tesla T4", "NVIDIA T4"); dropping them keeps normalised names comparable
_NOISE = frozenset({"NVIDIA", "GEFORCE", "TESLA"})
_SEPARATORS = re.compile(r"[\s\-_/,()]+")
#: "major.minor" as NVML prints it; bounded digit counts so that int() never sees a huge string
_CAPABILITY = re.compile(r"(\d{1,3})\.(\d{1,3})", re.ASCII)

#: GeForce variant words: a "Ti", "SUPER", "D" (China) or laptop part is a different chip or
#: configuration, never silently its base model
_GEFORCE_VARIANTS = frozenset({"TI", "SUPER", "D", "LAPTOP", "MOBILE"})


@dataclass(frozen=True, slots=True)
class GpuModel:
    """One GPU model and the figures the validator judges it by.

    ``exact_peak_flops`` must never be below the card's true dense peak in its fastest exact
    format: an honest, optimised worker must never look impossibly fast. ``dense_tf32_flops`` is
    the datasheet figure; for cards without TF32 (Volta, Turing) it is the FP32 rate, which is what
    our float32 challenge runs at there.
    """

    id: str
    name: str
    required: frozenset[str]
    forbidden: frozenset[str]
    dense_tf32_flops: float
    exact_peak_flops: float
    exact_format: str
    memory_mib: tuple[int, ...]
    compute_capability: tuple[int, int]
    #: share of ``dense_tf32_flops`` our TF32 cuBLAS challenge is expected to reach before the
    #: network's own measurements refine it; deliberately low, so a new model's first challenges
    #: are short rather than late
    backend_fraction: float = 0.6

    def __post_init__(self) -> None:
        problems = _model_problems(self)
        if problems:
            raise ValueError(f"GPU model {self.id!r}: " + "; ".join(problems))

    @property
    def backend_flops(self) -> float:
        """The challenge throughput expected before the network's measurements refine it:
        ``dense_tf32_flops x backend_fraction``."""
        return self.dense_tf32_flops * self.backend_fraction

    def matches(self, tokens: Iterable[str]) -> bool:
        """Whether a normalised name satisfies this model's token rules."""
        present = frozenset(tokens)
        return self.required <= present and not (self.forbidden & present)


def _model_problems(model: GpuModel) -> list[str]:
    problems: list[str] = []
    if not model.id or model.id != model.id.lower() or model.id in (UNKNOWN, CPU_MODEL):
        problems.append("id must be lowercase, non-empty and not a reserved id")
    if not model.required:
        problems.append("required tokens must not be empty")
    if model.required & model.forbidden:
        problems.append("a token is both required and forbidden")
    for token in model.required | model.forbidden:
        # a rule token that normalise() can never produce would silently never match
        if normalise(token) != (token,):
            problems.append(f"rule token {token!r} is not in normalised form")
    figures = (model.dense_tf32_flops, model.exact_peak_flops)
    if not all(math.isfinite(f) and f > 0 for f in figures):
        problems.append("figures must be positive and finite")
    elif model.exact_peak_flops < model.dense_tf32_flops:
        # the exact formats are never slower than TF32 on one card: a smaller figure is a typo
        problems.append("exact_peak_flops is below dense_tf32_flops")
    if model.exact_format not in EXACT_FORMATS:
        problems.append(f"exact_format must be one of {sorted(EXACT_FORMATS)}")
    if not model.memory_mib or any(m <= 0 for m in model.memory_mib):
        problems.append("memory_mib must list positive sizes")
    if not 0.0 < model.backend_fraction < 1.0:
        problems.append("backend_fraction must lie in (0, 1)")
    return problems


def normalise(name: str) -> tuple[str, ...]:
    """The upper-case tokens of an NVML name, brand words dropped.

    Splits on whitespace and ``- _ / , ( )``, so ``"NVIDIA A100-SXM4-80GB"`` becomes
    ``("A100", "SXM4", "80GB")`` and ``"Tesla V100-PCIE-16GB"`` ``("V100", "PCIE", "16GB")``.
    ``NVIDIA``, ``GEFORCE`` and ``TESLA`` are dropped: they say nothing about the model.
    """
    return tuple(t for t in _SEPARATORS.split(name.upper()) if t and t not in _NOISE)


# --------------------------------------------------------------------------- the models

_GIB = 1024  # MiB per GiB: datasheets' "80 GB" is read as 80 GiB = 81920 MiB


def _model(
    id: str,
    name: str,
    required: Iterable[str],
    forbidden: Iterable[str],
    *,
    tf32: float,
    exact: float,
    fmt: str = "int8",
    memory_gb: Iterable[int],
    cc: tuple[int, int],
) -> GpuModel:
    """A model from figures in TFLOP/s (TOPS) and memory in GB, as datasheets print them."""
    return GpuModel(
        id=id,
        name=name,
        required=frozenset(required),
        forbidden=frozenset(forbidden),
        dense_tf32_flops=tf32 * TERA,
        exact_peak_flops=exact * TERA,
        exact_format=fmt,
        memory_mib=tuple(gb * _GIB for gb in memory_gb),
        compute_capability=cc,
    )


# Figures are dense (non-sparse) vendor datasheet figures in TFLOP/s or TOPS. Where a datasheet
# quotes only sparse figures ("with sparsity"), they are halved here; that is marked "sparse / 2".
# fmt: off
_MODELS: tuple[GpuModel, ...] = (
    # ---- Blackwell (data centre)
    # HGX B200 datasheet, per GPU: TF32 2.25 PF and INT8 9 POPS sparse / 2. Shipped boards expose
    # 180 GB of the 192 GB of HBM3e; both sizes are accepted.
    _model("b200", "NVIDIA B200", {"B200"}, (),
           tf32=1125, exact=4500, memory_gb=(180, 192), cc=(10, 0)),
    # GB200 NVL72 datasheet, per GPU (1/72 of the rack): TF32 2.5 PF and INT8 10 POPS sparse / 2;
    # 186 GB of HBM3e per GPU (192 GB in early specifications).
    _model("gb200", "NVIDIA GB200", {"GB200"}, (),
           tf32=1250, exact=5000, memory_gb=(186, 192), cc=(10, 0)),
    # ---- Hopper
    # H200 SXM datasheet: TF32 989 TF and INT8 3958 TOPS sparse / 2.
    _model("h200-sxm", "NVIDIA H200 SXM", {"H200"}, {"NVL", "PCIE"},
           tf32=494.7, exact=1979, memory_gb=(141,), cc=(9, 0)),
    # H200 NVL datasheet: TF32 835 TF sparse / 2. The same die as the SXM part at a lower power
    # limit, so the SXM part's INT8 figure is kept as a safe upper bound (the NVL datasheet's
    # 3341 TOPS sparse / 2 = 1670.5 is quoted at a lower clock than the card may boost to).
    _model("h200-nvl", "NVIDIA H200 NVL", {"H200", "NVL"}, {"PCIE"},
           tf32=417.5, exact=1979, memory_gb=(141,), cc=(9, 0)),
    # H100 SXM5 datasheet: TF32 989 TF and INT8 3958 TOPS sparse / 2.
    _model("h100-sxm", "NVIDIA H100 SXM", {"H100"}, {"PCIE", "NVL"},
           tf32=494.7, exact=1979, memory_gb=(80,), cc=(9, 0)),
    # H100 PCIe datasheet: TF32 756 TF and INT8 3026 TOPS sparse / 2.
    _model("h100-pcie", "NVIDIA H100 PCIe", {"H100", "PCIE"}, {"NVL"},
           tf32=378, exact=1513, memory_gb=(80,), cc=(9, 0)),
    # H100 NVL datasheet: TF32 835 TF sparse / 2. Its launch datasheet quoted the SXM part's
    # per-GPU INT8 rate (3958 TOPS sparse); the larger of the two revisions is kept.
    _model("h100-nvl", "NVIDIA H100 NVL", {"H100", "NVL"}, {"PCIE"},
           tf32=417.5, exact=1979, memory_gb=(94,), cc=(9, 0)),
    # GH200 datasheet (the Hopper GPU of the superchip): as the H100 SXM. 96 GB HBM3 or 144 GB
    # HBM3e; the "480GB" in its NVML name is the Grace CPU's LPDDR5X, not GPU memory.
    _model("gh200", "NVIDIA GH200", {"GH200"}, (),
           tf32=494.7, exact=1979, memory_gb=(96, 144), cc=(9, 0)),
    # H800: the H100's export variant with reduced NVLink and FP64; tensor rates as the H100's.
    _model("h800-sxm", "NVIDIA H800 SXM", {"H800"}, {"PCIE", "NVL"},
           tf32=494.7, exact=1979, memory_gb=(80,), cc=(9, 0)),
    _model("h800-pcie", "NVIDIA H800 PCIe", {"H800", "PCIE"}, {"NVL"},
           tf32=378, exact=1513, memory_gb=(80,), cc=(9, 0)),
    # H20: the export-limited Hopper. Published figures (TF32 74 TF, INT8 296 TOPS) do not say
    # whether they are sparse; they are taken as dense, the safe reading for the exact peak.
    # 96 GB HBM3, and a later 141 GB HBM3e variant.
    _model("h20", "NVIDIA H20", {"H20"}, (),
           tf32=74, exact=296, memory_gb=(96, 141), cc=(9, 0)),
    # ---- Ampere (data centre)
    # A100 datasheet: TF32 156 TF and INT8 624 TOPS dense. 40 GB and 80 GB, plus the 64 GB part
    # of some supercomputers ("A100-SXM-64GB").
    _model("a100-sxm", "NVIDIA A100 SXM", {"A100"}, {"PCIE"},
           tf32=156, exact=624, memory_gb=(40, 64, 80), cc=(8, 0)),
    _model("a100-pcie", "NVIDIA A100 PCIe", {"A100", "PCIE"}, (),
           tf32=156, exact=624, memory_gb=(40, 80), cc=(8, 0)),
    # A800: the A100's export variant (reduced NVLink); SXM, PCIe and the 40 GB "Active" card
    # share the A100's tensor rates, so one id covers them.
    _model("a800", "NVIDIA A800", {"A800"}, (),
           tf32=156, exact=624, memory_gb=(40, 80), cc=(8, 0)),
    # A40 datasheet: TF32 74.8 TF, INT8 299.3 TOPS dense.
    _model("a40", "NVIDIA A40", {"A40"}, (),
           tf32=74.8, exact=299.3, memory_gb=(48,), cc=(8, 6)),
    # A10 datasheet: TF32 62.5 TF, INT8 250 TOPS dense.
    _model("a10", "NVIDIA A10", {"A10"}, (),
           tf32=62.5, exact=250, memory_gb=(24,), cc=(8, 6)),
    # A10G (AWS): no public datasheet. The A10's GA102 configuration at a slightly higher boost
    # clock: approximate, with the INT8 figure rounded up so an honest card is never too fast.
    _model("a10g", "NVIDIA A10G", {"A10G"}, (),
           tf32=63, exact=256, memory_gb=(24,), cc=(8, 6)),
    # ---- Ada Lovelace (data centre and workstation)
    # L40S datasheet: TF32 183 TF, INT8 733 TOPS dense.
    _model("l40s", "NVIDIA L40S", {"L40S"}, (),
           tf32=183, exact=733, memory_gb=(48,), cc=(8, 9)),
    # L40 datasheet: TF32 90.5 TF, INT8 362 TOPS dense.
    _model("l40", "NVIDIA L40", {"L40"}, (),
           tf32=90.5, exact=362, memory_gb=(48,), cc=(8, 9)),
    # L4 datasheet: TF32 120 TF and INT8 485 TOPS sparse / 2.
    _model("l4", "NVIDIA L4", {"L4"}, (),
           tf32=60, exact=242.5, memory_gb=(24,), cc=(8, 9)),
    # L20: the export-market Ada card. Published figures (TF32 59.8 TF, INT8 239 TOPS) are taken
    # as dense, the safe reading for the exact peak; approximate.
    _model("l20", "NVIDIA L20", {"L20"}, (),
           tf32=59.8, exact=239, memory_gb=(48,), cc=(8, 9)),
    # RTX 6000 Ada datasheet / Ada whitepaper: TF32 182.1 TF, INT8 728.5 TOPS dense.
    _model("rtx-6000-ada", "NVIDIA RTX 6000 Ada Generation", {"RTX", "6000", "ADA"}, (),
           tf32=182.1, exact=728.5, memory_gb=(48,), cc=(8, 9)),
    # ---- Ampere (workstation)
    # GA102 whitepaper, RTX A6000: TF32 77.4 TF, INT8 309.7 TOPS dense (154.8 is TF32 sparse).
    _model("rtx-a6000", "NVIDIA RTX A6000", {"A6000"}, (),
           tf32=77.4, exact=309.7, memory_gb=(48,), cc=(8, 6)),
    # ---- GeForce: whitepaper dense figures. GeForce FP16 with FP32 accumulation (and TF32) run
    # at half the professional rate; int8 with int32 accumulation does not, so it is the exact
    # peak.
    # Blackwell whitepaper, RTX 5090: TF32 104.8 TF, INT8 838 TOPS dense.
    _model("rtx-5090", "NVIDIA GeForce RTX 5090", {"RTX", "5090"}, _GEFORCE_VARIANTS,
           tf32=104.8, exact=838, memory_gb=(32,), cc=(12, 0)),
    # Ada whitepaper, RTX 4090: TF32 82.6 TF, INT8 660.6 TOPS dense.
    _model("rtx-4090", "NVIDIA GeForce RTX 4090", {"RTX", "4090"}, _GEFORCE_VARIANTS,
           tf32=82.6, exact=660.6, memory_gb=(24,), cc=(8, 9)),
    # Ada whitepaper, RTX 4080 (16 GB): TF32 48.7 TF, INT8 389.9 TOPS dense.
    _model("rtx-4080", "NVIDIA GeForce RTX 4080", {"RTX", "4080"}, _GEFORCE_VARIANTS,
           tf32=48.7, exact=389.9, memory_gb=(16,), cc=(8, 9)),
    # RTX 4080 SUPER: no whitepaper of its own; 80 SMs at 2.55 GHz at the Ada GeForce per-SM
    # rates give TF32 52.2 TF and INT8 417.8 TOPS (rounded up to 418): approximate.
    _model("rtx-4080-super", "NVIDIA GeForce RTX 4080 SUPER", {"RTX", "4080", "SUPER"},
           _GEFORCE_VARIANTS - {"SUPER"},
           tf32=52.2, exact=418, memory_gb=(16,), cc=(8, 9)),
    # GA102 whitepaper, RTX 3090: TF32 35.6 TF, INT8 284.7 TOPS dense.
    _model("rtx-3090", "NVIDIA GeForce RTX 3090", {"RTX", "3090"}, _GEFORCE_VARIANTS,
           tf32=35.6, exact=284.7, memory_gb=(24,), cc=(8, 6)),
    # RTX 3090 Ti: 84 SMs at 1.86 GHz at the GA102 GeForce per-SM rates give TF32 40 TF and
    # INT8 320 TOPS: approximate.
    _model("rtx-3090-ti", "NVIDIA GeForce RTX 3090 Ti", {"RTX", "3090", "TI"},
           _GEFORCE_VARIANTS - {"TI"},
           tf32=40, exact=320, memory_gb=(24,), cc=(8, 6)),
    # ---- Volta: no TF32 and no int8 tensor path. The float32 challenge runs at the FP32 rate; the
    # fastest exact format is FP16 inputs with FP32 accumulation on the tensor cores.
    # V100 datasheet: SXM2 FP32 15.7 TF, tensor 125 TF; PCIe FP32 14 TF, tensor 112 TF.
    _model("v100-sxm2", "NVIDIA Tesla V100 SXM2", {"V100", "SXM2"}, (),
           tf32=15.7, exact=125, fmt="fp16", memory_gb=(16, 32), cc=(7, 0)),
    _model("v100-pcie", "NVIDIA Tesla V100 PCIe", {"V100", "PCIE"}, (),
           tf32=14, exact=112, fmt="fp16", memory_gb=(16, 32), cc=(7, 0)),
    # ---- Turing: no TF32 (FP32 8.1 TF), but int8 tensor cores: T4 datasheet INT8 130 TOPS.
    _model("t4", "NVIDIA Tesla T4", {"T4"}, (),
           tf32=8.1, exact=130, memory_gb=(16,), cc=(7, 5)),
)
# fmt: on

#: real NVML spellings -> the model id each must identify as; checked at import, so a new rule
#: that captures another model's name fails loudly instead of mislabelling cards
NVML_EXAMPLES: Mapping[str, str] = MappingProxyType(
    {
        "NVIDIA B200": "b200",
        "NVIDIA GB200": "gb200",
        "NVIDIA H200": "h200-sxm",
        "NVIDIA H200 NVL": "h200-nvl",
        "NVIDIA H100 80GB HBM3": "h100-sxm",
        "NVIDIA H100 PCIe": "h100-pcie",
        "NVIDIA H100 NVL": "h100-nvl",
        "NVIDIA GH200 480GB": "gh200",
        "NVIDIA H800": "h800-sxm",
        "NVIDIA H800 PCIe": "h800-pcie",
        "NVIDIA H20": "h20",
        "NVIDIA A100-SXM4-80GB": "a100-sxm",
        "NVIDIA A100-SXM4-40GB": "a100-sxm",
        "NVIDIA A100-PCIE-40GB": "a100-pcie",
        "NVIDIA A100 80GB PCIe": "a100-pcie",
        "NVIDIA A800-SXM4-80GB": "a800",
        "NVIDIA A40": "a40",
        "NVIDIA A10": "a10",
        "NVIDIA A10G": "a10g",
        "NVIDIA L40S": "l40s",
        "NVIDIA L40": "l40",
        "NVIDIA L4": "l4",
        "NVIDIA L20": "l20",
        "NVIDIA RTX 6000 Ada Generation": "rtx-6000-ada",
        "NVIDIA RTX A6000": "rtx-a6000",
        "NVIDIA GeForce RTX 5090": "rtx-5090",
        "NVIDIA GeForce RTX 4090": "rtx-4090",
        "NVIDIA GeForce RTX 4080": "rtx-4080",
        "NVIDIA GeForce RTX 4080 SUPER": "rtx-4080-super",
        "NVIDIA GeForce RTX 3090": "rtx-3090",
        "NVIDIA GeForce RTX 3090 Ti": "rtx-3090-ti",
        "Tesla V100-SXM2-32GB": "v100-sxm2",
        "Tesla V100-PCIE-16GB": "v100-pcie",
        "Tesla T4": "t4",
    }
)


def _matching(models: Iterable[GpuModel], name: str) -> list[GpuModel]:
    tokens = frozenset(normalise(name))
    return [m for m in models if m.matches(tokens)]


def _build(models: Iterable[GpuModel], examples: Mapping[str, str]) -> Mapping[str, GpuModel]:
    """The id -> model table; raises if two models share an id or an example name is not matched
    by exactly its own model (which also rules out two rules matching one real name)."""
    table: dict[str, GpuModel] = {}
    for model in models:
        if model.id in table:
            raise ValueError(f"duplicate GPU model id {model.id!r}")
        table[model.id] = model
    for name, expected in examples.items():
        if expected not in table:
            raise ValueError(f"example {name!r} names an unknown id {expected!r}")
        found = [m.id for m in _matching(table.values(), name)]
        if found != [expected]:
            raise ValueError(f"NVML name {name!r} must match only {expected!r}, matches {found}")
    return MappingProxyType(table)


CATALOGUE: Mapping[str, GpuModel] = _build(_MODELS, NVML_EXAMPLES)


def match_model(name: str) -> GpuModel | None:
    """The one model whose rules ``name`` satisfies; ``None`` when none or several do."""
    found = _matching(CATALOGUE.values(), name)
    return found[0] if len(found) == 1 else None


# --------------------------------------------------------------------------- identity


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """What a reported device is, as far as the validator can tell.

    ``unverifiable`` is set when the report contradicts the catalogue (memory or compute
    capability): such a GPU is neither challenged nor leased, and the reason is shown to its
    operator.
    """

    model_id: str
    model: GpuModel | None
    unverifiable: str | None = None

    @property
    def known(self) -> bool:
        return self.model is not None

    @property
    def verifiable(self) -> bool:
        return self.unverifiable is None


def _memory_fits(memory_mib: int, nominal: int) -> bool:
    # integer arithmetic: exact at the bounds, and no overflow for absurd reports
    return MEMORY_LOW_PERCENT * nominal <= memory_mib * 100 <= MEMORY_HIGH_PERCENT * nominal


def _mib_list(sizes: tuple[int, ...]) -> str:
    return " or ".join(f"{s} MiB" for s in sizes)


def identify(
    uuid: str,
    name: str,
    memory_mib: int | None = None,
    compute_capability: str | None = None,
) -> DeviceIdentity:
    """The identity of a device from what its worker reports (NVML's uuid, name, total memory in
    MiB and "major.minor" compute capability; ``None`` = not reported, accepted).

    A ``CPU-`` uuid is always the CPU pseudo-device, whatever it calls itself: a CPU must never be
    challenged, priced or leased as the GPU it names. Never raises.
    """
    if uuid.startswith(CPU_UUID_PREFIX):
        return DeviceIdentity(CPU_MODEL, None)
    model = match_model(name)
    if model is None:
        return DeviceIdentity(UNKNOWN, None)
    reasons: list[str] = []
    if memory_mib is not None and not any(_memory_fits(memory_mib, n) for n in model.memory_mib):
        reasons.append(
            f"reported memory {memory_mib} MiB does not fit {model.name}: expected "
            f"{_mib_list(model.memory_mib)}, accepted from {MEMORY_LOW_PERCENT}% to "
            f"{MEMORY_HIGH_PERCENT}% of one"
        )
    if compute_capability is not None:
        expected = "{}.{}".format(*model.compute_capability)
        parsed = _CAPABILITY.fullmatch(compute_capability.strip())
        if parsed is None:
            reasons.append(
                f"reported compute capability {compute_capability!r} is malformed: "
                f"{model.name} has {expected}"
            )
        elif (int(parsed[1]), int(parsed[2])) != model.compute_capability:
            reasons.append(
                f"reported compute capability {compute_capability.strip()} does not fit "
                f"{model.name}: expected {expected}"
            )
    return DeviceIdentity(model.id, model, "; ".join(reasons) if reasons else None)


# --------------------------------------------------------------------------- helpers


def max_exact_peak() -> float:
    """The largest exact-format peak in the catalogue: the cap for a device nobody can identify."""
    return max(m.exact_peak_flops for m in CATALOGUE.values())


def max_dense_tf32() -> float:
    """The largest dense TF32 peak in the catalogue."""
    return max(m.dense_tf32_flops for m in CATALOGUE.values())


def slowest_backend_flops() -> float:
    """The smallest expected challenge throughput: an unknown card is sized as this slow one, so
    its challenge is never longer than the slowest catalogued card's."""
    return min(m.backend_flops for m in CATALOGUE.values())


def price_key(identity: DeviceIdentity) -> str:
    """The key prices are looked up by: the model id (``unknown`` and ``cpu`` included), so one
    price covers every memory variant of a model and no name spelling can pick its own price."""
    return identity.model_id


__all__ = [
    "CATALOGUE",
    "CPU_MODEL",
    "CPU_UUID_PREFIX",
    "EXACT_FORMATS",
    "MEMORY_HIGH_PERCENT",
    "MEMORY_LOW_PERCENT",
    "NVML_EXAMPLES",
    "TERA",
    "UNKNOWN",
    "DeviceIdentity",
    "GpuModel",
    "identify",
    "match_model",
    "max_dense_tf32",
    "max_exact_peak",
    "normalise",
    "price_key",
    "slowest_backend_flops",
]
