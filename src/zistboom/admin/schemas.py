"""Request bodies of the admin API (pydantic v2).

Every body forbids unknown fields (a typo is a 422 naming the field, not a silent no-op), strips
surrounding whitespace and bounds every string to its column length, so nothing a caller sends can
reach the database in a shape it refuses. Timestamps must carry a time zone (ISO 8601, e.g.
``2026-12-01T00:00:00Z``) and lie between the years 2000 and 2200.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

from zistboom.licensing.service import EARLIEST_DATE, LATEST_DATE
from zistboom.text import has_content, tidy_name

ID_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
PROVINCE_PATTERN = r"^IR-\d{2}$"
MAX_BIGINT = 2**63 - 1


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")
    return value


def _in_range(value: datetime) -> datetime:
    if not EARLIEST_DATE <= value < LATEST_DATE:  # the licensing service's range, for every API timestamp
        raise ValueError("must be between 2000-01-01 and 2200-01-01")
    return value.astimezone(timezone.utc)


def Text(max_length: int, min_length: int = 1) -> Any:  # noqa: N802 - a type factory
    """A stripped string of ``min_length..max_length`` characters without NUL."""
    return Annotated[str, StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length),
                     AfterValidator(_no_nul)]


def _readable(value: str) -> str:
    if not has_content(value):
        raise ValueError("must contain a letter or digit (not only spaces, ZWNJ, kashida, diacritics or punctuation)")
    return tidy_name(value).strip()


def Name(max_length: int) -> Any:  # noqa: N802 - a type factory
    """A :func:`Text` name people read (Persian or English): at least one letter or digit once
    normalised (:func:`zistboom.text.has_content`), so a name of only ZWNJ or kashida is refused;
    stored with Arabic ي/ك as Persian ی/ک and without stray ZWNJs (:func:`zistboom.text.tidy_name`)."""
    return Annotated[Text(max_length), AfterValidator(_readable)]


def Ident(max_length: int) -> Any:  # noqa: N802
    """A lower-case identifier such as ``transport.traffic-fines`` (``[a-z0-9][a-z0-9._-]*``)."""
    return Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=max_length,
                                            pattern=ID_PATTERN)]


ProvinceCode = Annotated[str, StringConstraints(strip_whitespace=True, pattern=PROVINCE_PATTERN)]
Timestamp = Annotated[AwareDatetime, AfterValidator(_in_range)]
Url = Text(500)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, allow_inf_nan=False)


# --- provinces ---------------------------------------------------------------------------------

class ProvincePatch(Body):
    name_fa: Name(100) | None = None
    name_en: Name(100) | None = None
    capital_fa: Name(100) | None = None
    capital_en: Name(100) | None = None


# --- clusters ----------------------------------------------------------------------------------

class ClusterCreate(Body):
    id: Ident(64)
    name_fa: Name(200)
    name_en: Name(200)


class ClusterPatch(Body):
    name_fa: Name(200) | None = None
    name_en: Name(200) | None = None


# --- services ----------------------------------------------------------------------------------

class ServiceCreate(Body):
    """A service with its identity-card fields (شناسنامهٔ خدمت)."""

    id: Ident(100)
    cluster_id: Ident(64)
    name_fa: Name(300)
    name_en: Name(300)
    agency_fa: Name(300)
    agency_en: Name(300)
    service_type: Literal["G2C", "G2B", "G2G"]
    level: Literal["national", "provincial"]
    fee_rials: int = Field(0, ge=0, le=MAX_BIGINT, description="fee in Iranian rials, >= 0")
    national_service_id: Text(11) | None = Field(None, description="optional 11-digit national service id")
    slo_target: float = Field(0.999, gt=0, lt=1, description="availability objective, fraction in (0, 1)")
    keep_bodies: bool = False


class ServicePatch(Body):
    cluster_id: Ident(64) | None = None
    name_fa: Name(300) | None = None
    name_en: Name(300) | None = None
    agency_fa: Name(300) | None = None
    agency_en: Name(300) | None = None
    service_type: Literal["G2C", "G2B", "G2G"] | None = None
    level: Literal["national", "provincial"] | None = None
    fee_rials: int | None = Field(None, ge=0, le=MAX_BIGINT)
    national_service_id: Text(11) | None = None
    slo_target: float | None = Field(None, gt=0, lt=1)
    keep_bodies: bool | None = None
    current_contract_version: Text(40) | None = None


class ContractCreate(Body):
    version: Text(40) = Field(description="semantic version, e.g. 1.2.0")
    openapi: dict[str, Any] = Field(description="the OpenAPI 3 document")
    make_current: bool = Field(False, description="route the gateway by this version from now on")


# --- operators ---------------------------------------------------------------------------------

class OperatorCreate(Body):
    id: Ident(64)
    name_fa: Name(200)
    name_en: Name(200)
    national_id: Text(11, 11) = Field(description="11-digit legal-entity national id with its check digit")
    home_province: ProvinceCode
    endpoints: list[Url] = Field(min_length=1, max_length=32, description="http:// base URLs (https is not supported: operators are reached over the private network)")
    health_url: Url


class OperatorPatch(Body):
    name_fa: Name(200) | None = None
    name_en: Name(200) | None = None
    national_id: Text(11, 11) | None = None
    home_province: ProvinceCode | None = None
    endpoints: list[Url] | None = Field(None, min_length=1, max_length=32)
    health_url: Url | None = None


# --- licences ----------------------------------------------------------------------------------

class LicenceCreate(Body):
    """A licence application (goes in as ``pending``); exactly one of service_id / cluster_id."""

    operator_id: Ident(64)
    service_id: Ident(100) | None = None
    cluster_id: Ident(64) | None = None
    provinces: list[ProvinceCode] = Field(min_length=1, max_length=64)
    valid_from: Timestamp
    valid_until: Timestamp
    sla_target: float = Field(0.995, gt=0, lt=1)
    reason: Text(2000, 0) = ""


class LicencePatch(Body):
    """Amend a still-pending application."""

    provinces: list[ProvinceCode] | None = Field(None, min_length=1, max_length=64)
    valid_from: Timestamp | None = None
    valid_until: Timestamp | None = None
    sla_target: float | None = Field(None, gt=0, lt=1)
    reason: Text(2000, 0) = ""


class LicenceAction(Body):
    reason: Text(2000, 0) = ""
    valid_until: Timestamp | None = Field(None, description="required for renew: the new end of validity")
    evidence: dict[str, Any] | None = None


# --- clients -----------------------------------------------------------------------------------

class ClientCreate(Body):
    id: Ident(64)
    name: Name(200)
    province: ProvinceCode | None = None
    services: list[Ident(100)] = Field(default_factory=list, max_length=1000,
                                       description="services this client may call (deny by default)")


class ClientPatch(Body):
    name: Name(200) | None = None
    province: ProvinceCode | None = None


class KeyCreate(Body):
    revoke_existing: bool = Field(False, description="rotate: revoke every other key of the client")


class AccessPut(Body):
    services: list[Ident(100)] = Field(max_length=1000)
