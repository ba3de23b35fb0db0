"""An independent GAEN reader: fetches every chunk listed in the indexes of a feed bucket (the
JSON index and index.txt must agree) and checks it the way a phone would, with no enfeed code:
the zip holds export.bin and export.sig, export.bin starts with the 16-byte header, and the
ECDSA P-256 signature over export.bin verifies with the given public key. Prints the keys per feed; exits non-zero on any problem.

usage: gaen_check.py ENDPOINT BUCKET PUBLIC_KEY_PEM FEED...
"""
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


def check(zip_bytes, public_key):
    archive = zipfile.ZipFile(io.BytesIO(zip_bytes))
    assert sorted(archive.namelist()) == ["export.bin", "export.sig"], archive.namelist()
    export_bin, export_sig = archive.read("export.bin"), archive.read("export.sig")
    assert export_bin[:16] == HEADER, export_bin[:16]
    keys = [v for n, _, v in fields(export_bin[16:]) if n == 7]
    key_data = [bytes(v) for k in keys for n, _, v in fields(k) if n == 1]
    assert all(len(k) == 16 for k in key_data)
    signatures = [v for n, _, sig in fields(export_sig) if n == 1
                  for m, _, v in fields(sig) if m == 4]
    assert signatures, "no signature"
    public_key.verify(signatures[0], export_bin, ec.ECDSA(hashes.SHA256()))
    return key_data


def main():
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
