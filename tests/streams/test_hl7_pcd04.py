"""IHE PCD-04 alerts out: message shape, and delivery to a local MLLP receiver with retries."""

from __future__ import annotations

import asyncio

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from streams.broker import free_port
from streams.contracts import Alert
from streams.hl7 import build
from streams.hl7.alerts_out import PCD04Sender
from streams.hl7.fast import parse
from streams.mllp import MLLPServer

T0 = 1_735_732_800_000_000_000


def alert(action="raised", kind="ioh_predicted", priority="medium", **evidence) -> Alert:
    ev = {"map_now_mmhg": 71.2, "risk_5": 0.41, "risk_10": 0.72, "top_driver": "map_trend", "gate_reasons": None}
    ev.update(evidence)
    return Alert(alert_id="9f3c2a", event_id=f"9f3c2a:{action}:{T0}", bed_id="OR-3", episode=1, kind=kind,
                 action=action, priority=priority, t_ns=T0, message="IOH predicted within 10 min | risk 0.72",
                 evidence=ev)


def facets(message: bytes) -> dict[str, list[str]]:
    p = parse(message)
    return {p.field_text(s, 3, 2): [p.get(s, 2), p.get(s, 4), p.field_text(s, 5), p.get(s, 8)]
            for s in p.all("OBX")}


def test_pcd04_message_shape():
    msg = build.pcd04(alert())
    p = parse(msg)
    assert p.message_type == ("ORU", "R40") and p.msh_field(9, 3) == "ORU_R40" and p.version == "2.6"
    assert p.msh_field(21) == "IHE_PCD_ACM_001"
    obr = p.first("OBR")
    assert p.field_text(obr, 3) == "9f3c2a" and p.field_text(obr, 4, 2) == "MDC_EVT_ALARM"
    assert p.field_text(p.first("PV1"), 3) == "OR-3"
    f = facets(msg)
    assert f["MDC_EVT_ALARM"][:2] == ["CWE", "1.0.0.0.1"] and f["MDC_EVT_ALARM"][3] == "PM~SP"
    assert p.unescape(p.all("OBX")[0][5].split("^")[8]) == "IOH predicted within 10 min | risk 0.72"
    assert f["MDC_PRESS_BLD_ART_ABP_MEAN"][2] == "71.2"
    assert f["MDC_ATTR_EVENT_PHASE"][1:3] == ["1.0.0.0.3", "start"]
    assert f["MDC_ATTR_ALARM_STATE"][2] == "active" and f["MDC_ATTR_ALARM_PRIORITY"][2] == "PM"
    assert f["MDC_ATTR_ALERT_TYPE"][2] == "SP" and f["risk_10"][2] == "0.72"
    assert "gate_reasons" not in f
    # hl7apy reads it back segment by segment with the v2.6 data types
    m = parse_message(msg.decode(), find_groups=False, validation_level=VALIDATION_LEVEL.TOLERANT)
    assert [s.name for s in m.children][:4] == ["MSH", "PID", "PV1", "OBR"]
    assert m.msh.msh_10.value == p.control_id


def test_pcd04_lifecycle_mapping_and_stable_control_id():
    resolved = facets(build.pcd04(alert("resolved")))
    assert resolved["MDC_ATTR_EVENT_PHASE"][2] == "end" and resolved["MDC_ATTR_ALARM_STATE"][2] == "inactive"
    paused = facets(build.pcd04(alert("suppressed")))
    assert paused["MDC_ATTR_ALARM_INACTIVATION_STATE"][2] == "alarm-paused"
    tech = facets(build.pcd04(alert(kind="signal_quality", priority="low", map_now_mmhg=None)))
    assert tech["MDC_EVT_ALARM"][3] == "PL~ST" and "MDC_ATTR_ALERT_SOURCE" in tech
    a, b = build.pcd04(alert(), now_ns=T0), build.pcd04(alert(), now_ns=T0 + 10**9)
    assert parse(a).control_id == parse(b).control_id  # retransmissions keep the control id


def test_sender_retries_until_the_receiver_acks():
    async def main():
        port = free_port()
        received: list[bytes] = []
        answers = iter(["drop", "AA", "AE"])

        async def receiver(message: bytes):
            received.append(message)
            p = parse(message)
            what = next(answers)
            if what == "drop":
                return None  # no answer: the sender must time out and resend
            return build.ack(what, p.control_id, reason="not today" if what == "AE" else "")

        sender = PCD04Sender("127.0.0.1", port, ack_timeout_s=0.5, backoff_s=0.05, max_backoff_s=0.2)
        task = asyncio.create_task(sender.deliver(alert()))
        await asyncio.sleep(0.4)  # receiver not up yet: connection refused, retried with backoff
        assert not task.done() and sender.attempts >= 2
        async with MLLPServer(receiver, port=port):
            outcome, message, reply = await asyncio.wait_for(task, 10)
            assert outcome == "delivered" and build.ack_code(reply)[0] == "AA"
            assert len(received) == 2 and received[0] == received[1] == message
            outcome2, _, reply2 = await asyncio.wait_for(sender.deliver(alert("resolved")), 10)
            assert outcome2 == "rejected" and b"not today" in reply2
        await sender.close()

    asyncio.run(main())
