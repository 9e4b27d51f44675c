"""Reading the catalogue and province facts the demo ecosystem is seeded from.

The facts live outside the repository, in the project's shared data folder (``../shared/`` beside
the repository, or the folder named by ``ZISTBOOM_SHARED_DIR``): ``catalog.tsv``/``catalog.md``
(10 clusters, 42 services) and ``data/iran_provinces/provinces.csv`` (31 provinces).
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path


class SharedDataMissing(FileNotFoundError):
    """The shared data folder (or a file in it) is not where it should be."""


@dataclass(frozen=True)
class ProvinceFact:
    code: str
    sci_code: int
    name_fa: str
    name_en: str
    capital_fa: str
    capital_en: str


@dataclass(frozen=True)
class ServiceFact:
    id: str
    cluster_id: str
    name_fa: str
    name_en: str


@dataclass(frozen=True)
class ClusterFact:
    id: str
    name_fa: str
    name_en: str


def shared_dir() -> Path:
    """The shared data folder.

    Raises:
        SharedDataMissing: with the paths tried, when no folder holding ``catalog.tsv`` is found.
    """
    tried: list[Path] = []
    env = os.environ.get("ZISTBOOM_SHARED_DIR")
    candidates = [Path(env)] if env else []
    for start in (Path.cwd(), Path(__file__).resolve()):
        for parent in (start, *start.parents):
            candidates.append(parent.parent / "shared")
    for cand in candidates:
        tried.append(cand)
        if (cand / "catalog.tsv").is_file():
            return cand
    raise SharedDataMissing(
        "shared data folder not found (need catalog.tsv and data/iran_provinces/provinces.csv); "
        "put it at ../shared beside the repository or set ZISTBOOM_SHARED_DIR. Tried: "
        + ", ".join(str(p) for p in dict.fromkeys(tried))
    )


def load_provinces(base: Path | None = None) -> list[ProvinceFact]:
    """The 31 provinces from ``data/iran_provinces/provinces.csv``."""
    path = (base or shared_dir()) / "data" / "iran_provinces" / "provinces.csv"
    if not path.is_file():
        raise SharedDataMissing(f"missing {path}")
    with path.open(encoding="utf-8") as fh:
        return [
            ProvinceFact(r["iso3166_2"], int(r["sci_province_code"]), r["name_fa"], r["name_en"],
                         r["capital_fa"], r["capital_en"])
            for r in csv.DictReader(fh)
        ]


def load_services(base: Path | None = None) -> list[ServiceFact]:
    """The 42 services from ``catalog.tsv``."""
    path = (base or shared_dir()) / "catalog.tsv"
    with path.open(encoding="utf-8") as fh:
        return [ServiceFact(r["service_id"], r["cluster_id"], r["name_fa"], r["name_en"])
                for r in csv.DictReader(fh, delimiter="\t")]


_CLUSTER_LINE = re.compile(r"^\*\*`([a-z0-9-]+)`\*\*\s+—\s+(.+?)\s+—\s+(.+?)\s*$")


def load_clusters(base: Path | None = None) -> list[ClusterFact]:
    """The 10 clusters with Persian and English names from ``catalog.md``."""
    path = (base or shared_dir()) / "catalog.md"
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        mt = _CLUSTER_LINE.match(line.strip())
        if mt:
            out.append(ClusterFact(*mt.groups()))
    if not out:
        raise SharedDataMissing(f"no cluster lines found in {path}")
    return out
