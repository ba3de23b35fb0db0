"""Reads the trust registry with the reference TUF client (python-tuf's ngclient).

usage: ngclient.py BASE_URL ROOT_JSON STATE_DIR TARGET...

Trusts ROOT_JSON on first use, keeps what it trusts in STATE_DIR (so a later run checks for
rollback as a long-lived client would), refreshes the metadata, then downloads each TARGET
(a region's entry) and prints one JSON object: each target's `region`, or null when the
registry no longer lists it.
"""

import json
import os
import shutil
import sys

from tuf.ngclient import Updater

base, root, state, names = sys.argv[1].rstrip("/") + "/", sys.argv[2], sys.argv[3], sys.argv[4:]
metadata_dir = os.path.join(state, "metadata")
target_dir = os.path.join(state, "targets")
os.makedirs(metadata_dir, exist_ok=True)
os.makedirs(target_dir, exist_ok=True)
if not os.path.exists(os.path.join(metadata_dir, "root.json")):
    shutil.copy(root, os.path.join(metadata_dir, "root.json"))

updater = Updater(
    metadata_dir=metadata_dir,
    metadata_base_url=base + "metadata/",
    target_base_url=base + "targets/",
    target_dir=target_dir,
    bootstrap=None,
)
updater.refresh()
found = {}
for name in names:
    info = updater.get_targetinfo(name)
    if info is None:
        found[name] = None
        continue
    path = updater.find_cached_target(info) or updater.download_target(info)
    with open(path, encoding="utf-8") as entry:
        found[name] = json.load(entry)["region"]
print(json.dumps(found, sort_keys=True))
