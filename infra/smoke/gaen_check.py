"""An independent GAEN reader: fetches every chunk listed in the indexes of a feed bucket (the
JSON index and index.txt must agree) and checks it the way a phone would, with no enfeed code:
the zip holds export.bin and export.sig, export.bin starts with the 16-byte header, and the
ECDSA P-256 signature over export.bin verifies with the given public key. Prints the keys per feed; exits non-zero on any problem.

usage: gaen_check.py ENDPOINT BUCKET PUBLIC_KEY_PEM FEED...
       gaen_check.py --file CHUNK.zip PUBLIC_KEY_PEM
The second form checks one file and prints its keys and revised keys, every field, as JSON.
"""
import base64
import io
import json
import sys
import zipfile

import boto3

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

HEADER = b"EK Export v1    "


def fields(buf):
    """(field number, wire type, value) of a protobuf message."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(buf, i)
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 2:
            size, i = varint(buf, i)
            value, i = buf[i:i + size], i + size
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        yield number, wire, value


def varint(buf, i):
    shift = result = 0
    while True:
        byte = buf[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, i
        shift += 7


def signed(value):
    """An int32 field's value (negative ones come as 64-bit varints)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def key_fields(message):
    """A TemporaryExposureKey as JSON, by its field numbers."""
    key = {}
    for number, _, value in fields(message):
        if number == 1:
            key["keyData"] = base64.b64encode(value).decode()
        elif number in (2, 3, 4, 5):
            name = ["transmissionRisk", "rollingStartNumber", "rollingPeriod", "reportType"]
            key[name[number - 2]] = signed(value)
        elif number == 6:  # sint32, zig-zag
            key["daysSinceOnset"] = (value >> 1) ^ -(value & 1)
    return key


def read(zip_bytes, public_key):
    """The keys (field 7) and revised keys (field 8) of a verified file."""
    archive = zipfile.ZipFile(io.BytesIO(zip_bytes))
    assert sorted(archive.namelist()) == ["export.bin", "export.sig"], archive.namelist()
    export_bin, export_sig = archive.read("export.bin"), archive.read("export.sig")
    assert export_bin[:16] == HEADER, export_bin[:16]
    signatures = [v for n, _, sig in fields(export_sig) if n == 1
                  for m, _, v in fields(sig) if m == 4]
    assert signatures, "no signature"
    public_key.verify(signatures[0], export_bin, ec.ECDSA(hashes.SHA256()))
    found = {"keys": [], "revisedKeys": []}
    for number, _, value in fields(export_bin[16:]):
        if number in (7, 8):
            key = key_fields(value)
            assert len(base64.b64decode(key["keyData"])) == 16, key
            found["keys" if number == 7 else "revisedKeys"].append(key)
    return found


def check(zip_bytes, public_key):
    return [base64.b64decode(k["keyData"]) for k in read(zip_bytes, public_key)["keys"]]


def main():
    if sys.argv[1] == "--file":
        public_key = serialization.load_pem_public_key(open(sys.argv[3], "rb").read())
        json.dump(read(open(sys.argv[2], "rb").read(), public_key), sys.stdout)
        return
    endpoint, bucket, pem, feeds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="eu-central-2",
                      aws_access_key_id="x", aws_secret_access_key="y")
    public_key = serialization.load_pem_public_key(open(pem, "rb").read())
    for feed in feeds:
        index = json.loads(s3.get_object(Bucket=bucket, Key=feed)["Body"].read())
        # Express devices find the same chunks through index.txt, one path per line.
        text = s3.get_object(Bucket=bucket, Key=f"{feed}/index.txt")
        assert text["ContentType"].startswith("text/plain"), text["ContentType"]
        listed = text["Body"].read().decode().splitlines()
        assert listed == [f"{feed}/{n}" for n in index["chunks"]], listed
        keys = []
        for n in index["chunks"]:
            obj = s3.get_object(Bucket=bucket, Key=f"{feed}/{n}")
            assert obj["ContentType"] == "application/zip", obj["ContentType"]
            keys += check(obj["Body"].read(), public_key)
        assert len(keys) == len(set(keys)), f"{feed}: a key appears twice"
        print(f"{feed}: chunks {index['chunks']}, {len(keys)} keys, signatures valid")
        print("  " + " ".join(sorted(k.hex() for k in keys)))


if __name__ == "__main__":
    main()
