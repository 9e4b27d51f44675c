"""The demo ecosystem: 31 provinces with their borders, 10 clusters, 42 services with identity-card
fields and contracts, 14 private operators in 12 provinces, licences, and client systems.

Licences are laid out so that every service has at least two licensed operators, at least one of
them outside any given operator's province, and so that routing by province is visible: each
cluster has two operators licensed nationally and two licensed only for their home province and
its neighbours.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from zistboom import licensing
from zistboom.registry import catalog
from zistboom.registry import models as m
from zistboom.registry.borders import border_pairs, neighbours
from zistboom.registry.contracts import contract_for
from zistboom.registry.db import utcnow
from zistboom.registry.snapshot import bump_version, hash_api_key
from zistboom.registry.validation import company_id_check_digit

# cluster -> (responsible agency fa, en)
AGENCIES = {
    "identity": ("سازمان ثبت احوال کشور", "National Organization for Civil Registration"),
    "judicial": ("قوه قضاییه", "Judiciary of Iran"),
    "transport": ("پلیس راهور فراجا", "Traffic Police (FARAJA)"),
    "tax": ("سازمان امور مالیاتی کشور", "Iranian National Tax Administration"),
    "welfare": ("وزارت تعاون، کار و رفاه اجتماعی", "Ministry of Cooperatives, Labour and Social Welfare"),
    "health": ("وزارت بهداشت، درمان و آموزش پزشکی", "Ministry of Health and Medical Education"),
    "business": ("وزارت صنعت، معدن و تجارت", "Ministry of Industry, Mine and Trade"),
    "agriculture": ("وزارت جهاد کشاورزی", "Ministry of Agriculture Jihad"),
    "payments": ("خزانه‌داری کل کشور", "National Treasury"),
    "education": ("وزارت آموزش و پرورش", "Ministry of Education"),
}
AGENCY_OVERRIDES = {
    "identity.postal-address": ("شرکت ملی پست", "Iran Post Company"),
    "judicial.passport": ("پلیس مهاجرت و گذرنامه", "Immigration and Passport Police"),
    "welfare.insurance-record": ("سازمان تأمین اجتماعی", "Social Security Organization"),
    "welfare.pension-slip": ("سازمان تأمین اجتماعی", "Social Security Organization"),
    "health.insurance-coverage": ("سازمان بیمهٔ سلامت ایران", "Iran Health Insurance Organization"),
    "business.company-registration": ("سازمان ثبت اسناد و املاک کشور", "Deeds and Properties Registration Organization"),
    "business.trademark": ("سازمان ثبت اسناد و املاک کشور", "Deeds and Properties Registration Organization"),
    "business.customs-declaration": ("گمرک جمهوری اسلامی ایران", "Islamic Republic of Iran Customs Administration"),
    "agriculture.crop-insurance": ("صندوق بیمهٔ کشاورزی", "Agricultural Insurance Fund"),
    "agriculture.water-permit": ("وزارت نیرو", "Ministry of Energy"),
    "education.degree-verification": ("وزارت علوم، تحقیقات و فناوری", "Ministry of Science, Research and Technology"),
    "education.student-loan": ("صندوق رفاه دانشجویان", "Student Welfare Fund"),
}
G2B = {"tax.vat-return", "tax.e-invoice", "business.permit", "business.company-registration",
       "business.trademark", "business.customs-declaration", "business.guild-license"}
G2G = {"identity.postal-address"}
PROVINCIAL = {"transport.technical-inspection", "health.appointment", "education.school-enrollment",
              "agriculture.water-permit", "business.guild-license", "payments.utility-bill"}
FEES = {"identity.national-card": 3_000_000, "judicial.passport": 25_000_000, "judicial.criminal-record": 1_500_000,
        "transport.driving-license": 4_500_000, "business.trademark": 12_000_000, "business.company-registration": 8_000_000,
        "education.degree-verification": 2_000_000, "identity.birth-certificate": 700_000}


@dataclass(frozen=True)
class DemoOperator:
    id: str
    name_fa: str
    name_en: str
    province: str
    national_prefix: str  # first 10 digits; the check digit is computed
    national_clusters: tuple[str, ...]
    regional_clusters: tuple[str, ...]


OPERATORS: tuple[DemoOperator, ...] = (
    DemoOperator("gilan-pardaz", "گیلان‌پرداز", "Gilan Pardaz", "IR-01", "1010123456", ("transport", "payments"), ("identity",)),
    DemoOperator("tehran-dadeh", "داده‌پردازان تهران", "Tehran Dadeh", "IR-23", "1010234567", ("identity", "tax"), ("transport",)),
    DemoOperator("samaneh-novin", "سامانه‌های نوین", "Samaneh Novin", "IR-23", "1010345678", ("judicial", "health"), ("payments",)),
    DemoOperator("isfahan-negar", "نگار اصفهان", "Isfahan Negar", "IR-10", "1010456789", ("welfare", "business"), ("tax",)),
    DemoOperator("fars-hamrah", "همراه فارس", "Fars Hamrah", "IR-07", "1010567890", ("agriculture", "education"), ("health",)),
    DemoOperator("khorasan-shabakeh", "شبکهٔ خراسان", "Khorasan Shabakeh", "IR-09", "1010678901", ("transport", "welfare"), ("judicial",)),
    DemoOperator("tabriz-fanavar", "فناوران تبریز", "Tabriz Fanavar", "IR-03", "1010789012", ("tax", "judicial"), ("business",)),
    DemoOperator("karun-ertebat", "ارتباط کارون", "Karun Ertebat", "IR-06", "1010890123", ("health", "payments"), ("agriculture",)),
    DemoOperator("mazandaran-sepehr", "سپهر مازندران", "Mazandaran Sepehr", "IR-02", "1010901234", ("business", "education"), ("welfare",)),
    DemoOperator("kerman-rayan", "رایان کرمان", "Kerman Rayan", "IR-08", "1011012345", ("identity", "agriculture"), ("education",)),
    DemoOperator("alborz-abr", "ابر البرز", "Alborz Abr", "IR-30", "1011123456", (), ("identity", "transport", "tax")),
    DemoOperator("zagros-kermanshah", "زاگرس کرمانشاه", "Zagros Kermanshah", "IR-05", "1011234567", (), ("judicial", "health", "welfare")),
    DemoOperator("kavir-yazd", "کویر یزد", "Kavir Yazd", "IR-21", "1011345678", (), ("business", "agriculture", "education")),
    DemoOperator("rasht-hooshmand", "هوشمند رشت", "Rasht Hooshmand", "IR-01", "1011456789", (), ("payments", "judicial", "tax")),
)

# client system -> (name, province, services it may NOT call)
CLIENTS = {
    "bank-melli-rasht": ("بانک ملی — شعبهٔ رشت", "IR-01", ()),
    "police-app-tehran": ("اپلیکیشن پلیس من — تهران", "IR-23", ("tax.vat-return", "tax.e-invoice")),
    "municipality-isfahan": ("شهرداری اصفهان", "IR-10", ()),
    "insurance-shiraz": ("بیمهٔ سلامت — شیراز", "IR-07", ("judicial.exit-ban",)),
    "citizen-app-mashhad": ("پیشخوان دولت همراه — مشهد", "IR-09", ()),
    "customs-bandar-abbas": ("گمرک بندرعباس", "IR-22", ()),
}


def operator_national_id(prefix10: str) -> str:
    return prefix10 + str(company_id_check_digit(prefix10))


def is_seeded(session: Session) -> bool:
    return (session.scalar(select(func.count()).select_from(m.Province)) or 0) > 0


def seed(session: Session, *, operators_base_port: int = 18100, shared: Path | None = None) -> dict[str, str]:
    """Insert the demo ecosystem into an empty, migrated database.

    Args:
        operators_base_port: operator ``i`` (in :data:`OPERATORS` order) gets endpoint
            ``http://127.0.0.1:{operators_base_port + i}``.
    Returns:
        The client systems' plain API keys, ``{client_id: key}`` (only the hashes are stored).
    Raises:
        catalog.SharedDataMissing: when the shared catalogue/province files are not found.
        ValueError: when the database already holds provinces.
    """
    if is_seeded(session):
        raise ValueError("database already seeded")
    base = shared or catalog.shared_dir()
    for p in catalog.load_provinces(base):
        session.add(m.Province(code=p.code, sci_code=p.sci_code, name_fa=p.name_fa, name_en=p.name_en,
                               capital_fa=p.capital_fa, capital_en=p.capital_en))
    session.flush()
    for a, b in border_pairs():
        session.add(m.ProvinceBorder(a=a, b=b))
    for c in catalog.load_clusters(base):
        session.add(m.Cluster(id=c.id, name_fa=c.name_fa, name_en=c.name_en))
    session.flush()
    for i, s in enumerate(catalog.load_services(base)):
        agency = AGENCY_OVERRIDES.get(s.id, AGENCIES[s.cluster_id])
        svc = m.Service(
            id=s.id, cluster_id=s.cluster_id, name_fa=s.name_fa, name_en=s.name_en,
            agency_fa=agency[0], agency_en=agency[1],
            service_type="G2B" if s.id in G2B else "G2G" if s.id in G2G else "G2C",
            level="provincial" if s.id in PROVINCIAL else "national",
            fee_rials=FEES.get(s.id, 0),
            national_service_id=f"{10_000_000_000 + 1_000 * (i + 1) + 7:011d}",
            current_contract_version="1.0.0",
        )
        svc.contracts = [m.ServiceContract(version="1.0.0", openapi=contract_for(s.id, s.name_fa, s.name_en))]
        session.add(svc)
    session.flush()
    all_provinces = [p.code for p in catalog.load_provinces(base)]
    now = utcnow().replace(microsecond=0)
    for i, op in enumerate(OPERATORS):
        port = operators_base_port + i
        session.add(m.Operator(
            id=op.id, name_fa=op.name_fa, name_en=op.name_en, national_id=operator_national_id(op.national_prefix),
            home_province=op.province, endpoints=[f"http://127.0.0.1:{port}"],
            health_url=f"http://127.0.0.1:{port}/healthz",
        ))
    session.flush()
    for op in OPERATORS:
        scopes = [(c, all_provinces) for c in op.national_clusters]
        scopes += [(c, [op.province, *neighbours(op.province)]) for c in op.regional_clusters]
        for cluster_id, provinces in scopes:
            lic = licensing.apply(
                session, operator_id=op.id, cluster_id=cluster_id, provinces=provinces,
                valid_from=now - timedelta(days=30), valid_until=now + timedelta(days=365),
                sla_target=0.995, actor="seed", reason="درخواست مجوز نمایشی",
            )
            licensing.transition(session, lic.id, "grant", actor="seed", reason="اعطای مجوز نمایشی")
    keys: dict[str, str] = {}
    service_ids = [s.id for s in catalog.load_services(base)]
    for cid, (name, province, denied) in CLIENTS.items():
        key = "zb_" + secrets.token_urlsafe(32)
        keys[cid] = key
        client = m.ClientSystem(id=cid, name=name, province=province)
        client.keys = [m.ApiKey(key_hash=hash_api_key(key), prefix=key[:10])]
        client.access = [m.ClientAccess(service_id=s) for s in service_ids if s not in denied]
        session.add(client)
    bump_version(session)
    session.flush()
    return keys


def write_client_keys(path: Path, keys: dict[str, str]) -> None:
    """Write the demo clients' keys as JSON with 0600 permissions (the only copy of the plain keys)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(keys, fh, ensure_ascii=False, indent=2)
    os.chmod(path, 0o600)
