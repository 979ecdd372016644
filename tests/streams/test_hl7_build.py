"""ACKs and sample messages are standard-conformant (checked with hl7apy strict validation)."""

from __future__ import annotations

import pytest

from streams.hl7 import build, samples
from streams.hl7.fast import parse
from streams.hl7.strict import validate


# hl7apy has no message structures for v2.3 ACKs, so v2.3.1 is the oldest checked here.
@pytest.mark.parametrize("version", ["2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8"])
@pytest.mark.parametrize("code", ["AA", "AE", "AR"])
def test_ack_is_valid_in_every_version(version, code):
    ack = build.ack(code, "CTRL|1", trigger="R01", version=version, sending_app="GW", reason="bad ^ value\rhere",
                    error=build.ERR_REQUIRED_MISSING)
    assert validate(ack) == []
    p = parse(ack)
    assert build.ack_code(ack) == (code, "CTRL\\F\\1")
    assert p.unescape(p.field_text(p.first("MSA"), 2)) == "CTRL|1"
    assert p.field_text(p.msh, 5) == "GW" and p.version == version
    if code != "AA":
        assert p.first("ERR") is not None and "101" in "|".join(p.first("ERR"))


def test_samples_are_valid_hl7():
    for raw in (samples.pcd01_oru(wave_mmhg=samples.abp_wave(20)), samples.adt("A01"), samples.adt("A03"),
                samples.ras()):
        assert validate(raw) == [], raw[:60]


def test_escape_round_trip():
    p = parse(b"MSH|^~\\&|A|B|||20250101||ORU^R01|1|P|2.6\r")
    text = "a|b^c~d\\e&f\ng"
    assert p.unescape(build.escape(text)) == text
    with pytest.raises(ValueError):
        build.ack("XX", "1")
