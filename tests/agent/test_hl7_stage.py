"""The parse stage: hl7.raw -> observations, waveform.abp, patients, events, dlq.hl7."""

from __future__ import annotations

import asyncio
import base64

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.hl7_stage import OUTPUT_TOPICS, register, route
from agent.settings import Settings
from streams import chunk_codec
from streams.contracts import ClinicalEvent, DeadLetter, Observation, PatientContext, decode
from streams.hl7 import samples

T0 = 1_735_732_800_000_000_000


def test_route_every_kind_keyed_by_bed():
    wave = samples.abp_wave(100)
    out = []
    for raw in (samples.adt("A01", "OR^2", T0), samples.pcd01_oru("OR^2", T0, wave_mmhg=wave),
                samples.ras("OR^2", T0)):
        out += route(raw)
    assert {k for _, k, _ in out} == {b"OR-2"}
    by_topic = {}
    for topic, _, value in out:
        by_topic.setdefault(topic, []).append(value)
    assert set(by_topic) == {"patients", "observations", "waveform.abp", "events"}
    ctx = decode(PatientContext, by_topic["patients"][0])
    assert ctx.sex == "F" and ctx.bed_id == "OR-2"
    maps = [decode(Observation, v) for v in by_topic["observations"]]
    assert {o.code for o in maps} >= {"150039", "147842"}
    chunk = chunk_codec.decode(by_topic["waveform.abp"][0])
    assert chunk.bed_id == "OR-2" and chunk.n == 100 and chunk.t0_ns == T0 and chunk.fs_hz == 100.0
    np.testing.assert_allclose(chunk.samples, np.round(wave, 1), atol=0.01)  # int16 codec, 0.01 mmHg
    ev = decode(ClinicalEvent, by_topic["events"][0])
    assert ev.kind == "drug" and ev.name == "phenylephrine"


def test_dead_letters_carry_reason_and_original_bytes():
    raw = samples.pcd01_oru("OR^2").replace(b"|81|266016", b"|999|266016")
    out = route(raw)
    dlq = [v for t, _, v in out if t == "dlq.hl7"]
    assert len(dlq) == 1 and sum(t == "observations" for t, _, _ in out) == 4
    dl = decode(DeadLetter, dlq[0])
    assert dl.source_topic == "hl7.raw" and dl.step == "hl7.parse" and "999" in dl.reason
    assert dl.original().startswith(b"OBX|6|NM|150039")
    junk = route(b"\x00garbage")
    assert [t for t, _, _ in junk] == ["dlq.hl7"]
    assert base64.b64decode(decode(DeadLetter, junk[0][2]).original_b64) == b"\x00garbage"


def _mutations():
    base = samples.pcd01_oru(wave_mmhg=samples.abp_wave(50)) + samples.adt() + samples.ras()
    return st.builds(lambda cuts, junk: _mutate(base, cuts, junk),
                     st.lists(st.integers(min_value=0, max_value=len(base)), max_size=6),
                     st.binary(max_size=12))


def _mutate(base: bytes, cuts: list[int], junk: bytes) -> bytes:
    out = bytearray(base)
    for c in cuts:
        if c < len(out):
            out[c:c + 1] = junk[:3] if junk else b""
    return bytes(out)


@settings(deadline=1000, max_examples=300)
@given(st.one_of(st.binary(max_size=400), _mutations(),
                 st.text(alphabet="MSHOBXPV1|^~\\&\r\n0123456789.-", max_size=300).map(str.encode)))
def test_route_never_raises_on_random_and_mutated_messages(raw):
    for topic, key, value in route(raw):
        assert topic in OUTPUT_TOPICS and isinstance(key, bytes) and isinstance(value, bytes)


def test_register_runs_in_a_faust_test_context():
    """The Faust agent applies route() to each hl7.raw record (topic sends captured, no broker)."""
    from unittest import mock

    import faust
    from faust.topics import Topic

    sent = []

    async def capture(self, *, key=None, value=None, **kw):
        sent.append((self.get_topic_name(), key, value))

    async def main():
        app = faust.App("hl7-stage-test", broker="kafka://127.0.0.1:1", store="memory://", autodiscover=False)
        agent = register(app, Settings(), metrics=None)
        with mock.patch.object(Topic, "send", capture):
            async with agent.test_context() as ctx:
                await ctx.put(samples.pcd01_oru("OR^6"), key=b"OR-6")
                await ctx.put(b"not hl7", key=b"")
        return agent

    agent = asyncio.run(main())
    assert agent.name == "hl7.parse"
    expected = route(samples.pcd01_oru("OR^6")) + route(b"not hl7")
    assert [(t, k) for t, k, _ in sent] == [(t, k) for t, k, _ in expected]
    assert [v for t, _, v in sent if t == "observations"] == [v for t, _, v in expected if t == "observations"]
