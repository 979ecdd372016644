"""Building HL7 v2 messages: ACK/NAK for MLLP senders and IHE PCD-04 alert reports.

Both are built by hand from escaped fields (hl7apy has no ORU_R40 structure and costs about
15 ms per message, too slow for an ACK per message at 2,000 messages/s); the tests parse every
built message back with hl7apy to check its structure.

ACK layout (v2.5+ ERR, reason also in MSA-3 for v2.3/2.4 receivers)::

    MSH|^~\\&|IOHWATCH|IOHWATCH|<MSH-3 of the original>|<MSH-4>|<now>||ACK^<trigger>^ACK|<id>|P|<version>
    MSA|AA|<original MSH-10>[|<reason>]
    ERR|||<code>^<text>^HL70357|E||||<reason>            (AE/AR only; v2.3/2.4: ERR|^^^<code>&<text>&HL70357)
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

ENC = "^~\\&"
APP = "IOHWATCH"

# HL7 table 0357 (message error condition codes) used in ERR-3.
ERR_SEGMENT_SEQUENCE = ("100", "Segment sequence error")
ERR_REQUIRED_MISSING = ("101", "Required field missing")
ERR_DATA_TYPE = ("102", "Data type error")
ERR_UNSUPPORTED_TYPE = ("200", "Unsupported message type")
ERR_UNSUPPORTED_VERSION = ("203", "Unsupported version id")
ERR_INTERNAL = ("207", "Application internal error")


def escape(text: str) -> str:
    """Escape the HL7 delimiters (default encoding characters) in a field value."""
    if not any(c in text for c in "|^~\\&\r\n"):
        return text
    out = text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
    out = out.replace("~", "\\R\\").replace("&", "\\T\\").replace("\r\n", "\\.br\\")
    return out.replace("\n", "\\.br\\").replace("\r", "\\.br\\")


def ts(t_ns: int | None = None, fraction: bool = True) -> str:
    """HL7 DTM in UTC with explicit offset: YYYYMMDDHHMMSS[.ffff]+0000."""
    t_ns = time.time_ns() if t_ns is None else t_ns
    dt = datetime.fromtimestamp(t_ns / 1e9, tz=timezone.utc)
    base = dt.strftime("%Y%m%d%H%M%S")
    if fraction:
        base += f".{(t_ns // 100_000) % 10_000:04d}"
    return base + "+0000"


def ack(code: str, control_id: str, *, trigger: str = "", sending_app: str = "", sending_facility: str = "",
        version: str = "", reason: str = "", error: tuple[str, str] = ERR_INTERNAL) -> bytes:
    """ACK message (``code`` AA, AE or AR) answering ``control_id``; ERR segment unless AA."""
    if code not in ("AA", "AE", "AR"):
        raise ValueError(f"acknowledgement code must be AA, AE or AR, got {code!r}")
    version = version if version[:2] == "2." and len(version) <= 8 else "2.6"
    vkey = tuple(int(x) for x in version[2:].split(".") if x.isdigit())
    if not trigger:
        msg_type = "ACK"
    elif vkey >= (3, 1):  # MSH-9.3 (message structure) exists from v2.3.1
        msg_type = f"ACK^{escape(trigger)}^ACK"
    else:
        msg_type = f"ACK^{escape(trigger)}"
    msh = "|".join(["MSH", ENC, APP, APP, escape(sending_app), escape(sending_facility), ts(), "",
                    msg_type, escape(f"ACK{control_id}"[:199]), "P", escape(version)])
    msa = f"MSA|{code}|{escape(control_id)}"
    segs = [msh]
    if code == "AA":
        segs.append(msa)
    else:
        r = escape(reason[:500])
        segs.append(f"{msa}|{r}" if vkey < (7,) else msa)  # MSA-3 is withdrawn in v2.7
        if vkey >= (5,):  # v2.5+: ERR-3 error code, ERR-4 severity, ERR-8 user message
            segs.append(f"ERR|||{error[0]}^{error[1]}^HL70357|E||||{r}")
        else:  # v2.3/2.4: ERR-1 error code and location, the code in its 4th component
            segs.append(f"ERR|^^^{error[0]}&{error[1]}&HL70357")
    return ("\r".join(segs) + "\r").encode()


def ack_code(message: bytes) -> tuple[str, str]:
    """(MSA-1, MSA-2) of an ACK, ('', '') when there is none."""
    for line in message.replace(b"\n", b"\r").split(b"\r"):
        if line.startswith(b"MSA"):
            parts = line.decode("utf-8", "replace").split("|")
            return (parts[1] if len(parts) > 1 else "", parts[2] if len(parts) > 2 else "")
    return "", ""


# --- IHE PCD-04 (Alert Communication Management, Report Alert) ----------------------------------
#
# One ORU^R40 per alert lifecycle event. The alert is one OBR (OBR-3 filler order number = the
# unique alert identifier, the same for every event of one alert; OBR-4 196616^MDC_EVT_ALARM)
# with its facets as OBX whose OBX-4 sub-ids share the prefix 1.0.0.0 and end in the facet
# number, following the PCD-04 event identification conventions:
#   .1  196616^MDC_EVT_ALARM (CWE): the alert type, local codes in coding system 99IOH, the
#       message text in CWE-9; OBX-8 carries priority (PH/PM/PL) and source (SP physiological,
#       ST technical) as repetitions
#   .2  the source: 150039^MDC_PRESS_BLD_ART_ABP_MEAN with the current MAP, or
#       68480^MDC_ATTR_ALERT_SOURCE when no MAP is known
#   .3  68481^MDC_ATTR_EVENT_PHASE   start | continue | end
#   .4  68482^MDC_ATTR_ALARM_STATE   active | inactive
#   .5  68483^MDC_ATTR_ALARM_INACTIVATION_STATE   enabled | alarm-paused
#   .6  68484^MDC_ATTR_ALARM_PRIORITY   PH | PM | PL
#   .7  68485^MDC_ATTR_ALERT_TYPE   SP | ST
#   .8+ evidence (risk per horizon, MAP slope, ...) as NM/ST OBX with 99IOH codes
# Lifecycle: raised -> start/active, escalated -> continue/active, suppressed (artifact; the
# alert stays active) -> continue/active with inactivation alarm-paused, resolved -> end/inactive.
# MSH-10 is derived from the alert's event id, so a retransmission carries the same control id.

PCD04_PROFILE = "IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.4.4.4^ISO"
LOCAL = "99IOH"
ALERT_CODES = {
    "ioh_predicted": ("IOH_PREDICTED", "Intraoperative hypotension predicted"),
    "ioh_in_progress": ("IOH_IN_PROGRESS", "Intraoperative hypotension in progress"),
    "signal_quality": ("ABP_SIGNAL_QUALITY", "Arterial pressure signal unusable"),
}
PHASES = {"raised": ("start", "active", "enabled"), "escalated": ("continue", "active", "enabled"),
          "suppressed": ("continue", "active", "alarm-paused"), "resolved": ("end", "inactive", "enabled")}
PRIORITY = {"high": "PH", "medium": "PM", "low": "PL"}


def _pcd04_control_id(event_id: str) -> str:
    import hashlib

    return "IOH" + hashlib.sha256(event_id.encode()).hexdigest()[:17]


def pcd04(alert, *, sending_app: str = APP, sending_facility: str = APP, now_ns: int | None = None) -> bytes:
    """IHE PCD-04 ORU^R40 of one ``streams.contracts.Alert`` lifecycle event."""
    code, text = ALERT_CODES.get(alert.kind, (alert.kind.upper(), alert.kind.replace("_", " ")))
    phase, state, inactivation = PHASES[alert.action]
    prio = PRIORITY[alert.priority]
    source = "ST" if alert.kind == "signal_quality" else "SP"
    t = ts(alert.t_ns)
    e = escape
    segs = [
        "|".join(["MSH", ENC, e(sending_app), e(sending_facility), "", "", ts(now_ns), "", "ORU^R40^ORU_R40",
                  _pcd04_control_id(alert.event_id), "P", "2.6", "", "", "NE", "AL", "", "UNICODE UTF-8", "", "",
                  PCD04_PROFILE]),
        "PID|1",
        f"PV1|1|I|{e(alert.bed_id)}",
        f"OBR|1|{e(alert.alert_id)}^{APP}|{e(alert.alert_id)}^{APP}|196616^MDC_EVT_ALARM^MDC|||{t}",
    ]
    sub = "1.0.0.0"

    def obx(n: int, vt: str, ident: str, facet: str, value: str, units: str = "", flags: str = "") -> str:
        return f"OBX|{n}|{vt}|{ident}|{sub}.{facet}|{value}|{units}||{flags}|||R|||{t}"

    segs.append(obx(1, "CWE", "196616^MDC_EVT_ALARM^MDC", "1",
                    f"{code}^{e(text)}^{LOCAL}^^^^^^{e(alert.message)}", flags=f"{prio}~{source}"))
    map_now = alert.evidence.get("map_now_mmhg")
    if isinstance(map_now, (int, float)):
        segs.append(obx(2, "NM", "150039^MDC_PRESS_BLD_ART_ABP_MEAN^MDC", "2", f"{map_now:.1f}",
                        "266016^MDC_DIM_MMHG^MDC"))
    else:
        segs.append(obx(2, "ST", "68480^MDC_ATTR_ALERT_SOURCE^MDC", "2", "iohwatch"))
    segs.append(obx(3, "ST", "68481^MDC_ATTR_EVENT_PHASE^MDC", "3", phase))
    segs.append(obx(4, "ST", "68482^MDC_ATTR_ALARM_STATE^MDC", "4", state))
    segs.append(obx(5, "ST", "68483^MDC_ATTR_ALARM_INACTIVATION_STATE^MDC", "5", inactivation))
    segs.append(obx(6, "ST", "68484^MDC_ATTR_ALARM_PRIORITY^MDC", "6", prio))
    segs.append(obx(7, "ST", "68485^MDC_ATTR_ALERT_TYPE^MDC", "7", source))
    n = 8
    for key in sorted(alert.evidence):
        value = alert.evidence[key]
        if value is None or key == "map_now_mmhg":
            continue
        ident = f"{e(key.upper())}^{e(key)}^{LOCAL}"
        if isinstance(value, (int, float)):
            segs.append(obx(n, "NM", ident, str(n), f"{value:.6g}"))
        else:
            segs.append(obx(n, "ST", ident, str(n), e(str(value))))
        n += 1
    return ("\r".join(segs) + "\r").encode()
