"""Reads a GAEN export file (zip) as a phone's library would, with nothing of enfeed's code:
Python's zipfile and a few lines of protobuf wire format. Prints the header fields, keys and
revised keys as JSON. Usage: gaen_reader.py FILE.zip"""

import base64
import json
import sys
import zipfile

HEADER = b"EK Export v1    "


def varint(data, at):
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def fields(data):
    """Each (field number, wire type, value) of a protobuf message."""
    at = 0
    while at < len(data):
        tag, at = varint(data, at)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, at = varint(data, at)
        elif wire == 2:
            length, at = varint(data, at)
            value, at = data[at:at + length], at + length
        elif wire == 5:
            value, at = data[at:at + 4], at + 4
        elif wire == 1:
            value, at = data[at:at + 8], at + 8
        else:
            raise ValueError(f"wire type {wire}")
        yield number, wire, value


def signed32(value):
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def key(message):
    # TemporaryExposureKey: 1 key_data, 2 transmission_risk_level, 3 rolling_start_interval_number,
    # 4 rolling_period, 5 report_type, 6 days_since_onset_of_symptoms (sint32).
    out = {}
    for number, _, value in fields(message):
        if number == 1:
            out["keyData"] = base64.b64encode(value).decode()
        elif number == 2:
            out["transmissionRisk"] = signed32(value)
        elif number == 3:
            out["rollingStartNumber"] = signed32(value)
        elif number == 4:
            out["rollingPeriod"] = signed32(value)
        elif number == 5:
            out["reportType"] = signed32(value)
        elif number == 6:
            out["daysSinceOnset"] = (value >> 1) ^ -(value & 1)
    return out


def main(path):
    with zipfile.ZipFile(path) as archive:
        export_bin = archive.read("export.bin")
        archive.read("export.sig")
    if not export_bin.startswith(HEADER):
        raise ValueError("export.bin does not start with the export header")
    out = {"keys": [], "revisedKeys": []}
    for number, _, value in fields(export_bin[len(HEADER):]):
        if number == 3:
            out["region"] = value.decode()
        elif number == 7:
            out["keys"].append(key(value))
        elif number == 8:
            out["revisedKeys"].append(key(value))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
