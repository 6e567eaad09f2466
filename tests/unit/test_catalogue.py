"""The GPU model catalogue and device identity (SPEC 4.5, byteleap.hardware)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from byteleap.hardware import (
    CATALOGUE,
    CPU_MODEL,
    CPU_UUID_PREFIX,
    NVML_EXAMPLES,
    TERA,
    UNKNOWN,
    DeviceIdentity,
    GpuModel,
    identify,
    match_model,
    max_dense_tf32,
    max_exact_peak,
    normalise,
    price_key,
    slowest_backend_flops,
)
from byteleap.hardware.catalogue import _build

GPU_UUID = "GPU-8a4bb1f2-56d1-4b2e-9e0c-1d2f3a4b5c6d"
DOC = Path(__file__).resolve().parents[2] / "docs" / "gpu-catalogue.md"

#: real NVML spellings -> the id each must identify as (the brief's list, plus a few more)
REAL_NAMES: dict[str, str] = {
    "NVIDIA B200": "b200",
    "NVIDIA GB200": "gb200",
    "NVIDIA H200": "h200-sxm",
    "NVIDIA H200 141GB HBM3e": "h200-sxm",
    "NVIDIA H200 NVL": "h200-nvl",
    "NVIDIA H100 80GB HBM3": "h100-sxm",
    "NVIDIA H100 PCIe": "h100-pcie",
    "NVIDIA H100 NVL": "h100-nvl",
    "NVIDIA GH200 480GB": "gh200",
    "NVIDIA GH200 144G HBM3e": "gh200",
    "NVIDIA H800": "h800-sxm",
    "NVIDIA H800 PCIe": "h800-pcie",
    "NVIDIA H20": "h20",
    "NVIDIA A100-SXM4-80GB": "a100-sxm",
    "NVIDIA A100-SXM4-40GB": "a100-sxm",
    "NVIDIA A100-SXM-64GB": "a100-sxm",
    "NVIDIA A100-PCIE-40GB": "a100-pcie",
    "NVIDIA A100 80GB PCIe": "a100-pcie",
    "NVIDIA A800-SXM4-80GB": "a800",
    "NVIDIA A800 80GB PCIe": "a800",
    "NVIDIA A800 40GB Active": "a800",
    "NVIDIA L40S": "l40s",
    "NVIDIA L40": "l40",
    "NVIDIA L4": "l4",
    "NVIDIA L20": "l20",
    "NVIDIA A40": "a40",
    "NVIDIA A10": "a10",
    "NVIDIA A10G": "a10g",
    "NVIDIA RTX 6000 Ada Generation": "rtx-6000-ada",
    "NVIDIA RTX A6000": "rtx-a6000",
    "NVIDIA GeForce RTX 5090": "rtx-5090",
    "NVIDIA GeForce RTX 4090": "rtx-4090",
    "NVIDIA GeForce RTX 4080": "rtx-4080",
    "NVIDIA GeForce RTX 4080 SUPER": "rtx-4080-super",
    "NVIDIA GeForce RTX 3090": "rtx-3090",
    "NVIDIA GeForce RTX 3090 Ti": "rtx-3090-ti",
    "Tesla V100-SXM2-32GB": "v100-sxm2",
    "Tesla V100-SXM2-16GB": "v100-sxm2",
    "Tesla V100-PCIE-16GB": "v100-pcie",
    "Tesla T4": "t4",
}

#: one realistic NVML name per catalogue id
NAME_OF: dict[str, str] = {}
for _name, _id in REAL_NAMES.items():
    NAME_OF.setdefault(_id, _name)

#: total memory as NVML reports it on real cards, in MiB
REPORTED_MIB: dict[str, int] = {
    "h100-sxm": 81559,
    "h100-pcie": 81559,
    "h100-nvl": 95830,
    "h200-sxm": 143771,
    "gh200": 97871,
    "b200": 183359,
    "a100-sxm": 81251,
    "l40s": 46068,
    "l40": 46068,
    "a40": 46068,
    "l4": 23034,
    "t4": 15360,
    "a10": 23028,
    "a10g": 23028,
    "rtx-a6000": 49140,
    "rtx-6000-ada": 49140,
    "rtx-5090": 32607,
    "rtx-4090": 24564,
    "rtx-3090": 24576,
    "rtx-4080": 16376,
    "v100-sxm2": 32510,
    "v100-pcie": 16160,
}

ALL_IDS = sorted(CATALOGUE)


def cc_string(model: GpuModel) -> str:
    return "{}.{}".format(*model.compute_capability)


# --------------------------------------------------------------------------- every model


def test_every_model_has_a_realistic_name() -> None:
    assert set(NAME_OF) == set(CATALOGUE)


@pytest.mark.parametrize("model_id", ALL_IDS)
def test_model_identifies_with_its_memory_and_capability(model_id: str) -> None:
    model = CATALOGUE[model_id]
    name = NAME_OF[model_id]
    cc = cc_string(model)
    bare = identify(GPU_UUID, name)
    assert bare == DeviceIdentity(model_id, model)
    assert bare.known and bare.verifiable
    for nominal in model.memory_mib:
        for reported in (nominal, round(nominal * 0.995), round(nominal * 0.94)):
            identity = identify(GPU_UUID, name, reported, cc)
            assert identity.model_id == model_id
            assert identity.verifiable, identity.unverifiable
    if model_id in REPORTED_MIB:
        assert identify(GPU_UUID, name, REPORTED_MIB[model_id], cc).verifiable


@pytest.mark.parametrize("model_id", ALL_IDS)
def test_wrong_memory_is_unverifiable(model_id: str) -> None:
    model = CATALOGUE[model_id]
    name = NAME_OF[model_id]
    for reported in (min(model.memory_mib) // 2, max(model.memory_mib) * 2, 0, -1):
        identity = identify(GPU_UUID, name, reported)
        assert identity.model_id == model_id
        assert identity.model is model
        assert not identity.verifiable
        reason = identity.unverifiable or ""
        assert str(reported) in reason
        assert str(model.memory_mib[0]) in reason


@pytest.mark.parametrize("model_id", ALL_IDS)
def test_wrong_compute_capability_is_unverifiable(model_id: str) -> None:
    model = CATALOGUE[model_id]
    name = NAME_OF[model_id]
    major, minor = model.compute_capability
    assert identify(GPU_UUID, name, None, cc_string(model)).verifiable
    for wrong in (f"{major + 1}.{minor}", f"{major}.{minor + 1}", "1.0"):
        identity = identify(GPU_UUID, name, model.memory_mib[0], wrong)
        assert identity.model_id == model_id
        assert not identity.verifiable
        assert wrong in (identity.unverifiable or "")
        assert cc_string(model) in (identity.unverifiable or "")


@pytest.mark.parametrize("malformed", ["", "9", "nine", "9.0.1", "9,0", "v9.0", "٩.٠", "1" * 5000])
def test_malformed_compute_capability_is_unverifiable(malformed: str) -> None:
    identity = identify(GPU_UUID, "NVIDIA H100 80GB HBM3", 81559, malformed)
    assert identity.model_id == "h100-sxm"
    assert not identity.verifiable


def test_both_contradictions_are_reported() -> None:
    identity = identify(GPU_UUID, "NVIDIA H100 80GB HBM3", 24564, "8.9")
    reason = identity.unverifiable or ""
    assert "24564" in reason and "8.9" in reason


def test_capability_with_surrounding_space_is_accepted() -> None:
    assert identify(GPU_UUID, "NVIDIA L40S", 46068, " 8.9 ").verifiable


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(("name", "model_id"), sorted(REAL_NAMES.items()))
def test_real_nvml_names(name: str, model_id: str) -> None:
    model = match_model(name)
    assert model is not None and model.id == model_id
    assert identify(GPU_UUID, name).model_id == model_id
    assert identify(GPU_UUID, name.upper()).model_id == model_id
    assert identify(GPU_UUID, name.lower()).model_id == model_id


def test_module_examples_agree_with_this_table() -> None:
    for name, model_id in NVML_EXAMPLES.items():
        assert REAL_NAMES[name] == model_id


@pytest.mark.parametrize(
    "name",
    [
        "NVIDIA GeForce RTX 3090 H200",
        "H100 A100",
        "NVIDIA L40S L4",
        "NVIDIA H100 NVL PCIe",
        "NVIDIA Quadro Future 9000",
        "",
        "GPU",
        "NVIDIA",
        "NVIDIA GeForce",
        "   ",
        "RTX",
        "NVIDIA GeForce RTX 4090 D",
        "NVIDIA GeForce RTX 4090 Laptop GPU",
        "NVIDIA GeForce RTX 4090 Ti",
        "NVIDIA GeForce RTX 3090 SUPER",
        "NVIDIA GeForce RTX 4080 Ti SUPER",
        "Quadro RTX 6000",
        "NVIDIA RTX PRO 6000 Blackwell Server Edition",
        "Tesla V100S-PCIE-32GB",
        "NVIDIA A100X",
        "NVIDIA GH100",
    ],
)
def test_ambiguous_and_unknown_names(name: str) -> None:
    assert match_model(name) is None
    identity = identify(GPU_UUID, name, 81920, "9.0")
    assert identity == DeviceIdentity(UNKNOWN, None)
    assert not identity.known and identity.verifiable


def test_tokens_not_substrings() -> None:
    gh200 = match_model("NVIDIA GH200 480GB")
    assert gh200 is not None and gh200.id == "gh200"
    for model_id in ("h100-sxm", "h200-sxm", "b200"):
        assert not CATALOGUE[model_id].matches(normalise("NVIDIA GH200 480GB"))
    assert not CATALOGUE["b200"].matches(normalise("NVIDIA GB200"))
    for model_id in ("l40", "l4"):
        assert not CATALOGUE[model_id].matches(normalise("NVIDIA L40S"))
    assert not CATALOGUE["l4"].matches(normalise("NVIDIA L40"))
    assert not CATALOGUE["h200-sxm"].matches(normalise("NVIDIA H20"))
    assert not CATALOGUE["h20"].matches(normalise("NVIDIA H200"))
    assert not CATALOGUE["a10"].matches(normalise("NVIDIA A10G"))


def test_variants_are_never_their_base_model() -> None:
    assert not CATALOGUE["rtx-4080"].matches(normalise("NVIDIA GeForce RTX 4080 SUPER"))
    assert not CATALOGUE["rtx-3090"].matches(normalise("NVIDIA GeForce RTX 3090 Ti"))
    assert not CATALOGUE["h100-sxm"].matches(normalise("NVIDIA H100 PCIe"))
    assert not CATALOGUE["h100-sxm"].matches(normalise("NVIDIA H100 NVL"))
    assert not CATALOGUE["h200-sxm"].matches(normalise("NVIDIA H200 NVL"))
    assert not CATALOGUE["a100-sxm"].matches(normalise("NVIDIA A100-PCIE-40GB"))


def test_normalise() -> None:
    assert normalise("NVIDIA A100-SXM4-80GB") == ("A100", "SXM4", "80GB")
    assert normalise("Tesla V100-PCIE-16GB") == ("V100", "PCIE", "16GB")
    assert normalise("NVIDIA GeForce RTX 4080 SUPER") == ("RTX", "4080", "SUPER")
    assert normalise(" nvidia  h100_(pcie),nvl/x ") == ("H100", "PCIE", "NVL", "X")
    assert normalise("") == ()


# --------------------------------------------------------------------------- CPU devices


@pytest.mark.parametrize("name", ["NVIDIA H200 141GB HBM3e", "cpu", "", "NVIDIA GeForce RTX 4090"])
def test_cpu_uuid_is_always_the_cpu(name: str) -> None:
    identity = identify(f"{CPU_UUID_PREFIX}0", name, 143771, "9.0")
    assert identity == DeviceIdentity(CPU_MODEL, None)
    assert not identity.known and identity.verifiable
    assert price_key(identity) == CPU_MODEL


def test_price_key() -> None:
    assert price_key(identify(GPU_UUID, "NVIDIA A100-SXM4-40GB", 40536)) == "a100-sxm"
    assert price_key(identify(GPU_UUID, "NVIDIA A100-SXM4-80GB", 81251)) == "a100-sxm"
    assert price_key(identify(GPU_UUID, "NVIDIA Quadro Future 9000")) == UNKNOWN
    assert price_key(identify("CPU-x", "x")) == "cpu"


# --------------------------------------------------------------------------- properties

_RULE_TOKENS = sorted({t for m in CATALOGUE.values() for t in m.required | m.forbidden})
_token_names = st.lists(
    st.sampled_from([*_RULE_TOKENS, "NVIDIA", "GeForce", "80GB", "HBM3", "x"]), max_size=5
).flatmap(
    lambda tokens: st.lists(
        st.sampled_from([" ", "-", "_", "/", ",", "(", ")", "  "]),
        min_size=len(tokens),
        max_size=len(tokens),
    ).map(lambda seps: "".join(s + t.lower() for s, t in zip(seps, tokens, strict=True)))
)


@settings(max_examples=300, deadline=None)
@given(
    uuid=st.one_of(st.text(), st.just(GPU_UUID), st.just("CPU-0")),
    name=st.one_of(st.text(), _token_names),
    memory=st.one_of(st.none(), st.integers()),
    cc=st.one_of(st.none(), st.text(), st.just("9.0"), st.just("8.9")),
)
def test_identify_never_raises(uuid: str, name: str, memory: int | None, cc: str | None) -> None:
    identity = identify(uuid, name, memory, cc)
    if uuid.startswith(CPU_UUID_PREFIX):
        assert identity == DeviceIdentity(CPU_MODEL, None)
        return
    matching = [m for m in CATALOGUE.values() if m.matches(normalise(name))]
    if len(matching) == 1:
        assert identity.model_id == matching[0].id
        assert identity.model is CATALOGUE[identity.model_id]
    else:
        assert identity == DeviceIdentity(UNKNOWN, None)
    assert price_key(identity) in {UNKNOWN, *CATALOGUE}


# --------------------------------------------------------------------------- figures


@pytest.mark.parametrize("model_id", ALL_IDS)
def test_figures_are_sane(model_id: str) -> None:
    model = CATALOGUE[model_id]
    assert model.id == model_id
    assert model.exact_peak_flops >= model.dense_tf32_flops > 0
    assert 0 < model.backend_flops < model.dense_tf32_flops
    # TFLOP/s scale: between a T4's FP32 rate and a rack-scale Blackwell GPU's int8 rate
    assert 1 * TERA <= model.dense_tf32_flops <= 2_000 * TERA
    assert model.exact_peak_flops <= 10_000 * TERA
    assert model.exact_format in {"int8", "fp16"}
    assert all(m > 1024 for m in model.memory_mib)
    assert model.required and not model.required & model.forbidden


def test_helpers() -> None:
    models = list(CATALOGUE.values())
    assert max_exact_peak() == max(m.exact_peak_flops for m in models)
    assert max_dense_tf32() == max(m.dense_tf32_flops for m in models)
    assert slowest_backend_flops() == min(m.backend_flops for m in models)
    assert slowest_backend_flops() == CATALOGUE["t4"].backend_flops
    assert max_exact_peak() >= max_dense_tf32() > slowest_backend_flops() > 0


def test_catalogue_is_read_only() -> None:
    with pytest.raises(TypeError):
        CATALOGUE["fake"] = CATALOGUE["t4"]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        CATALOGUE["t4"].dense_tf32_flops = 1e18  # type: ignore[misc]


def test_the_build_rejects_bad_tables() -> None:
    t4 = CATALOGUE["t4"]
    with pytest.raises(ValueError, match="duplicate"):
        _build([t4, t4], {})
    loose = dataclasses.replace(CATALOGUE["h100-sxm"], id="loose", forbidden=frozenset())
    with pytest.raises(ValueError, match="must match only"):
        _build([*CATALOGUE.values(), loose], {"NVIDIA H100 PCIe": "h100-pcie"})
    with pytest.raises(ValueError, match="unknown id"):
        _build([t4], {"Tesla T4": "t5"})


@pytest.mark.parametrize(
    "change",
    [
        {"exact_peak_flops": 1.0},
        {"dense_tf32_flops": float("nan")},
        {"exact_format": "fp8"},
        {"memory_mib": ()},
        {"backend_fraction": 1.0},
        {"required": frozenset()},
        {"required": frozenset({"Pcie"})},
        {"forbidden": frozenset({"T4"})},
        {"id": "T4"},
        {"id": UNKNOWN},
    ],
)
def test_a_bad_model_is_rejected(change: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(CATALOGUE["t4"], **change)  # type: ignore[arg-type]


def test_doc_table_lists_every_model() -> None:
    text = DOC.read_text(encoding="utf-8")
    rows = {m[1]: m[0] for m in re.finditer(r"^\| `([a-z0-9-]+)` \|.*$", text, flags=re.MULTILINE)}
    assert set(rows) == set(CATALOGUE)
    for model_id, row in rows.items():
        model = CATALOGUE[model_id]
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert f"{model.dense_tf32_flops / TERA:g}" in cells[2], row
        assert f"{model.exact_peak_flops / TERA:g}" in cells[3], row
        assert cc_string(model) in cells[5], row
