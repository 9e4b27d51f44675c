"""Land borders between Iran's 31 provinces (ISO 3166-2 codes), written for zistboom from the
country's administrative map. Used for the gateway's fallback tiers (own province, then
bordering provinces, then national). Each pair is listed once; :func:`border_pairs` returns them
ordered ``(a, b)`` with ``a < b``.
"""

from __future__ import annotations

_NEIGHBOURS: dict[str, tuple[str, ...]] = {
    "IR-00": ("IR-26", "IR-23", "IR-25", "IR-10", "IR-15", "IR-13"),          # Markazi
    "IR-01": ("IR-24", "IR-19", "IR-26", "IR-02"),                            # Gilan
    "IR-02": ("IR-01", "IR-26", "IR-30", "IR-23", "IR-20", "IR-27"),          # Mazandaran
    "IR-03": ("IR-04", "IR-24", "IR-19"),                                     # East Azerbaijan
    "IR-04": ("IR-03", "IR-19", "IR-12"),                                     # West Azerbaijan
    "IR-05": ("IR-12", "IR-13", "IR-15", "IR-16"),                            # Kermanshah
    "IR-06": ("IR-16", "IR-15", "IR-14", "IR-17", "IR-18"),                   # Khuzestan
    "IR-07": ("IR-18", "IR-17", "IR-10", "IR-21", "IR-08", "IR-22"),          # Fars
    "IR-08": ("IR-07", "IR-21", "IR-29", "IR-11", "IR-22"),                   # Kerman
    "IR-09": ("IR-28", "IR-20", "IR-29"),                                     # Razavi Khorasan
    "IR-10": ("IR-00", "IR-25", "IR-20", "IR-21", "IR-07", "IR-17", "IR-14", "IR-15", "IR-29"),  # Isfahan
    "IR-11": ("IR-08", "IR-29", "IR-22"),                                     # Sistan and Baluchestan
    "IR-12": ("IR-04", "IR-19", "IR-13", "IR-05"),                            # Kurdistan
    "IR-13": ("IR-12", "IR-19", "IR-26", "IR-00", "IR-15", "IR-05"),          # Hamadan
    "IR-14": ("IR-10", "IR-06", "IR-17", "IR-15"),                            # Chaharmahal and Bakhtiyari
    "IR-15": ("IR-00", "IR-13", "IR-05", "IR-16", "IR-06", "IR-14", "IR-10"), # Lorestan
    "IR-16": ("IR-05", "IR-15", "IR-06"),                                     # Ilam
    "IR-17": ("IR-06", "IR-14", "IR-10", "IR-07", "IR-18"),                   # Kohgiluyeh and Boyer-Ahmad
    "IR-18": ("IR-06", "IR-17", "IR-07", "IR-22"),                            # Bushehr
    "IR-19": ("IR-03", "IR-04", "IR-24", "IR-01", "IR-26", "IR-13", "IR-12"), # Zanjan
    "IR-20": ("IR-23", "IR-02", "IR-27", "IR-28", "IR-09", "IR-29", "IR-21", "IR-10", "IR-25"),  # Semnan
    "IR-21": ("IR-10", "IR-20", "IR-29", "IR-08", "IR-07"),                   # Yazd
    "IR-22": ("IR-18", "IR-07", "IR-08", "IR-11"),                            # Hormozgan
    "IR-23": ("IR-30", "IR-02", "IR-20", "IR-25", "IR-00"),                   # Tehran
    "IR-24": ("IR-01", "IR-19", "IR-03"),                                     # Ardabil
    "IR-25": ("IR-23", "IR-00", "IR-10", "IR-20"),                            # Qom
    "IR-26": ("IR-01", "IR-02", "IR-30", "IR-00", "IR-13", "IR-19"),          # Qazvin
    "IR-27": ("IR-02", "IR-20", "IR-28"),                                     # Golestan
    "IR-28": ("IR-27", "IR-20", "IR-09"),                                     # North Khorasan
    "IR-29": ("IR-09", "IR-20", "IR-21", "IR-08", "IR-11", "IR-10"),          # South Khorasan
    "IR-30": ("IR-23", "IR-02", "IR-26"),                                     # Alborz
}


def neighbours(code: str) -> tuple[str, ...]:
    """Provinces bordering ``code`` (empty tuple for an unknown code)."""
    return _NEIGHBOURS.get(code, ())


def border_pairs() -> list[tuple[str, str]]:
    """Every border once, as sorted ``(a, b)`` pairs with ``a < b``.

    Raises:
        ValueError: if the table is not symmetric (a listed border missing its reverse).
    """
    pairs = set()
    for a, ns in _NEIGHBOURS.items():
        for b in ns:
            if a not in _NEIGHBOURS.get(b, ()):
                raise ValueError(f"border {a}-{b} is not symmetric")
            pairs.add((min(a, b), max(a, b)))
    return sorted(pairs)
