"""The frozen challenge test vectors (SPEC 4.2, 4.3) every backend must reproduce.

``tests/unit/test_challenge_vectors.py`` checks them against the NumPy code and an independent
scalar implementation written from the spec; the CPU kernels, the CuPy backend and the CLI's
reference run check themselves against the same values.
"""

from __future__ import annotations

from byteleap.challenge.params import Binding, ChallengeParams

BINDING = Binding(
    miner_hotkey="5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
    worker_pubkey=bytes(range(32)),
    gpu_uuid="GPU-8f2a1c3e-0000-4000-8000-000000000001",
)
SEED = bytes.fromhex("00112233445566778899aabbccddeeff" * 2)
SMALL = ChallengeParams(m=8, n=8, k=16, v=15, stages=3)

# ---- frozen values ------------------------------------------------------------------------
KEY_0 = 0x7D7F97AEB493AC31
KEY_1_AFTER_SEVENS = 0x0ABCC1B47F7CD276
A0_ROW0_FIRST8 = [6, 11, -4, 4, 6, 14, -11, 10]
B0_ROW0_FIRST8 = [-7, 15, 9, 10, -3, 0, 11, 15]
SMALL_ROOTS = [
    "f362bde744d53a2c982d56bf47120880e1e0db516c44dbe5e8c9390e4bb53fb2",
    "b816fc24fec2ad07a88d3968151b777c579ea38f95ac992c7132e308d49bf659",
    "12eaac5de4afc5dc19913a75092dc45699aa6f3a12d07633b0995fc7a48e63c8",
]
