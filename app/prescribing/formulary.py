"""The formulary: products, their validation, the CSV import, the prescriber's search, live stock.

Units follow from the form (flower in grams with THC/CBD in % w/w, oils in millilitres with
mg/ml, capsules counted with mg per capsule), so a product's figures cannot disagree with its units.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa

from app.audit import services as audit
from app.database import transaction, utcnow
from app.extensions import db
from app.prescribing.models import Product
from app.prescribing.quantities import UNITS, figures


@dataclass(frozen=True)
class Form:
    key: str
    label: str
    #: Dispensing unit (a key of quantities.UNITS).
    unit: str
    #: Unit of the THC/CBD content.
    content_unit: str
    #: Upper bound of a plausible THC or CBD content in that unit.
    content_ceiling: Decimal


#: No form for smoking: cannabis-based products for medicinal use must not be smoked.
FORMS = {
    "dried_flower": Form("dried_flower", "Dried flower for vaporisation", "g", "% w/w", Decimal(40)),
    "granules": Form("granules", "Granules for vaporisation", "g", "% w/w", Decimal(40)),
    "oil": Form("oil", "Oral oil", "ml", "mg/ml", Decimal(300)),
    "capsule": Form("capsule", "Capsule", "capsule", "mg/capsule", Decimal(300)),
    "pastille": Form("pastille", "Pastille", "pastille", "mg/pastille", Decimal(300)),
}
SCHEDULES = ("2", "3", "4", "5")
FIELDS = ("name", "manufacturer", "form", "thc", "cbd", "pack_size", "dmd_code", "schedule", "unlicensed", "price",
          "active")
#: CSV columns: the fields above, plus optional unit columns that must agree with the form.
CSV_REQUIRED = ("name", "manufacturer", "form", "thc", "cbd", "pack_size", "price")
CSV_OPTIONAL = ("dmd_code", "schedule", "unlicensed", "active", "content_unit", "pack_unit")
MAX_IMPORT_ROWS = 2000


class ProductError(ValueError):
    """Field -> message for everything wrong with a product's values."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def form_of(product: Product) -> Form:
    return FORMS[product.form]


def unit_of(product: Product) -> str:
    return FORMS[product.form].unit


def strength(product: Product) -> str:
    """E.g. "THC 22% w/w, CBD <1% w/w"; "THC 10 mg/ml, CBD 10 mg/ml"."""
    form = form_of(product)
    sep = "" if form.content_unit.startswith("%") else " "

    def part(label: str, value: Decimal) -> str:
        if value < 1 and form.content_unit.startswith("%"):
            return f"{label} <1{sep}{form.content_unit}"
        return f"{label} {figures(value)}{sep}{form.content_unit}"

    return f"{part('THC', product.thc)}, {part('CBD', product.cbd)}"


def pack(product: Product) -> str:
    unit = UNITS[unit_of(product)]
    size = product.pack_size
    return f"{figures(size)} {unit.key}" if unit.key in ("g", "ml") else f"{figures(size)} {unit.word(size)}"


def price(product: Product) -> str:
    return f"£{product.price_pence // 100:,}.{product.price_pence % 100:02d}"


def verhoeff_valid(digits: str) -> bool:
    """SNOMED CT identifiers (dm+d codes included) end in a Verhoeff check digit."""
    mult = ((0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 3, 4, 0, 6, 7, 8, 9, 5), (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
            (3, 4, 0, 1, 2, 8, 9, 5, 6, 7), (4, 0, 1, 2, 3, 9, 5, 6, 7, 8), (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
            (6, 5, 9, 8, 7, 1, 0, 4, 3, 2), (7, 6, 5, 9, 8, 2, 1, 0, 4, 3), (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
            (9, 8, 7, 6, 5, 4, 3, 2, 1, 0))
    perm = ((0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 5, 7, 6, 2, 8, 3, 0, 9, 4), (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
            (8, 9, 1, 6, 0, 4, 3, 5, 2, 7), (9, 4, 5, 3, 1, 2, 6, 8, 7, 0), (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
            (2, 7, 9, 3, 8, 0, 6, 4, 1, 5), (7, 0, 4, 6, 9, 1, 3, 2, 5, 8))
    check = 0
    for i, char in enumerate(reversed(digits)):
        check = mult[check][perm[i % 8][int(char)]]
    return check == 0


def snomed_valid(code: str) -> bool:
    return code.isdigit() and 6 <= len(code) <= 18 and code[0] != "0" and verhoeff_valid(code)


def _decimal(raw: Any, label: str, errors: dict[str, str], key: str, *, ceiling: Decimal,
             allow_zero: bool = True) -> Decimal | None:
    text = str(raw if raw is not None else "").strip().replace(",", "")
    if not text:
        errors[key] = f"Enter the {label}"
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        errors[key] = f"The {label} must be a number, like 10 or 22.5"
        return None
    if not value.is_finite() or value < 0 or (value == 0 and not allow_zero):
        errors[key] = f"The {label} must be {'zero or more' if allow_zero else 'more than zero'}"
        return None
    if value > ceiling:
        errors[key] = f"The {label} must be at most {figures(ceiling)}"
        return None
    if value != value.quantize(Decimal("0.001")):
        errors[key] = f"Give the {label} to at most 3 decimal places"
        return None
    return value


def _flag(raw: Any, default: bool, errors: dict[str, str], key: str) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw if raw is not None else "").strip().lower()
    if not text:
        return default
    if text in ("1", "true", "yes", "y", "on"):
        return True
    if text in ("0", "false", "no", "n", "off"):
        return False
    errors[key] = "Use yes or no"
    return default


def clean(values: dict[str, Any]) -> dict[str, Any]:
    """Validate a product's values (from the form or a CSV row); raise ProductError naming each field."""
    errors: dict[str, str] = {}
    out: dict[str, Any] = {}
    for key, label in (("name", "product name"), ("manufacturer", "manufacturer")):
        text = str(values.get(key) or "").strip()
        if not text:
            errors[key] = f"Enter the {label}"
        elif len(text) > 200:
            errors[key] = f"The {label} must be 200 characters or fewer"
        out[key] = text
    form_key = str(values.get("form") or "").strip().lower()
    form = FORMS.get(form_key)
    if form is None:
        errors["form"] = f"Choose a form: {', '.join(FORMS)} (products for smoking are not allowed)"
    out["form"] = form_key
    ceiling = form.content_ceiling if form else Decimal(1000)
    out["thc"] = _decimal(values.get("thc"), "THC content", errors, "thc", ceiling=ceiling)
    out["cbd"] = _decimal(values.get("cbd"), "CBD content", errors, "cbd", ceiling=ceiling)
    out["pack_size"] = _decimal(values.get("pack_size"), "pack size", errors, "pack_size", ceiling=Decimal(10000),
                                allow_zero=False)
    if form and out["pack_size"] is not None and UNITS[form.unit].places == 0 \
            and out["pack_size"] != out["pack_size"].to_integral():
        errors["pack_size"] = f"A pack of {UNITS[form.unit].plural} holds a whole number of them"
    for key, expected in (("content_unit", form.content_unit if form else None),
                          ("pack_unit", form.unit if form else None)):
        given = str(values.get(key) or "").strip()
        if given and expected and given.replace(" ", "").lower() != expected.replace(" ", "").lower():
            errors[key] = f"A {form.label.lower()} is measured in {expected}, not {given}"
    if form and form.content_unit.startswith("%") and out["thc"] is not None and out["cbd"] is not None \
            and out["thc"] + out["cbd"] > 100:
        errors["cbd"] = "THC and CBD together cannot be more than 100% w/w"
    dmd = str(values.get("dmd_code") or "").strip().replace(" ", "")
    if dmd and not snomed_valid(dmd):
        errors["dmd_code"] = "A dm+d code is 6 to 18 digits ending in a valid check digit; leave it empty if none"
    out["dmd_code"] = dmd or None
    schedule = str(values.get("schedule") or "2").strip().upper().removeprefix("CD").removeprefix("SCHEDULE").strip()
    if schedule not in SCHEDULES:
        errors["schedule"] = "The schedule is 2, 3, 4 or 5 (cannabis-based products for medicinal use are 2)"
    out["schedule"] = schedule
    out["unlicensed"] = _flag(values.get("unlicensed"), True, errors, "unlicensed")
    out["active"] = _flag(values.get("active"), True, errors, "active")
    money = str(values.get("price") or "").strip().lstrip("£").replace(",", "")
    try:
        pence = Decimal(money) * 100
        if not money or pence < 0 or pence != pence.to_integral() or pence > 10_000_000:
            raise InvalidOperation
        out["price_pence"] = int(pence)
    except InvalidOperation:
        errors["price"] = "Enter the price per pack in pounds, like 85 or 85.50"
    if errors:
        raise ProductError(errors)
    return out


def _duplicate(session, values: dict[str, Any], exclude_id: int | None = None) -> bool:
    query = sa.select(Product.id).where(sa.func.lower(Product.name) == values["name"].lower(),
                                        sa.func.lower(Product.manufacturer) == values["manufacturer"].lower(),
                                        Product.form == values["form"])
    if exclude_id:
        query = query.where(Product.id != exclude_id)
    return session.scalar(query) is not None


def create(values: dict[str, Any]) -> Product:
    data = clean(values)
    with transaction() as session:
        if _duplicate(session, data):
            raise ProductError({"name": "This product is already in the formulary"})
        product = Product(**data)
        session.add(product)
        session.flush()
        audit.record("formulary.product_created", subject=("product", product.id), detail={"name": product.name})
    return product


def update(product: Product, values: dict[str, Any]) -> Product:
    data = clean(values)
    with transaction() as session:
        if _duplicate(session, data, exclude_id=product.id):
            raise ProductError({"name": "Another product with this name, manufacturer and form exists"})
        changed = sorted(k for k, v in data.items() if getattr(product, k) != v)
        for key, value in data.items():
            setattr(product, key, value)
        product.updated_at = utcnow()
        audit.record("formulary.product_updated", subject=("product", product.id), detail={"fields": changed})
    return product


def set_active(product: Product, active: bool) -> None:
    with transaction():
        product.active = active
        product.updated_at = utcnow()
        audit.record("formulary.product_reinstated" if active else "formulary.product_withdrawn",
                     subject=("product", product.id))


def get(product_id: int) -> Product | None:
    return db.session.get(Product, product_id)


def products(*, include_withdrawn: bool = True) -> list[Product]:
    query = sa.select(Product).order_by(Product.name, Product.id)
    if not include_withdrawn:
        query = query.where(Product.active)
    return list(db.session.scalars(query))


# CSV import -----------------------------------------------------------------------------------

@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    #: (line number in the file, message) for every rejected row; nothing is imported when any.
    errors: list[tuple[int, str]] | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


def import_csv(data: bytes) -> ImportResult:
    """Validate every row, then import all of them in one transaction, or none.

    A row whose name, manufacturer and form match an existing product updates it.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return ImportResult(errors=[(1, "The file is not UTF-8 text. Save it as “CSV UTF-8” and try again.")])
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in CSV_REQUIRED if c not in header]
    unknown = [h for h in header if h and h not in CSV_REQUIRED + CSV_OPTIONAL]
    if missing or unknown:
        problems = ([f"missing column{'s' if len(missing) > 1 else ''}: {', '.join(missing)}"] if missing else []) + \
                   ([f"unknown column{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}"] if unknown else [])
        return ImportResult(errors=[(1, "The header row has " + "; ".join(problems) + ".")])
    rows: list[tuple[int, dict[str, Any]]] = []
    errors: list[tuple[int, str]] = []
    seen: dict[tuple[str, str, str], int] = {}
    try:
        for raw in reader:
            line = reader.line_num
            if len(rows) + len(errors) >= MAX_IMPORT_ROWS:
                errors.append((line, f"Too many rows: import at most {MAX_IMPORT_ROWS} at a time."))
                break
            if None in raw:
                errors.append((line, "This row has more cells than the header."))
                continue
            values = {(k or "").strip().lower(): (v or "") for k, v in raw.items()}
            if not any(v.strip() for v in values.values()):
                continue
            try:
                cleaned = clean(values)
            except ProductError as exc:
                errors.append((line, "; ".join(f"{k}: {v}" for k, v in exc.errors.items())))
                continue
            identity = (cleaned["name"].lower(), cleaned["manufacturer"].lower(), cleaned["form"])
            if identity in seen:
                errors.append((line, f"Same product as line {seen[identity]}."))
                continue
            seen[identity] = line
            rows.append((line, cleaned))
    except csv.Error as exc:
        errors.append((reader.line_num, f"The file is not valid CSV ({exc})."))
    if errors:
        return ImportResult(errors=errors)
    if not rows:
        return ImportResult(errors=[(1, "The file has no product rows.")])
    result = ImportResult(errors=[])
    with transaction() as session:
        for _line, cleaned in rows:
            existing = session.scalar(sa.select(Product).where(
                sa.func.lower(Product.name) == cleaned["name"].lower(),
                sa.func.lower(Product.manufacturer) == cleaned["manufacturer"].lower(),
                Product.form == cleaned["form"]))
            if existing is None:
                session.add(Product(**cleaned))
                result.created += 1
            else:
                for key, value in cleaned.items():
                    setattr(existing, key, value)
                existing.updated_at = utcnow()
                result.updated += 1
        audit.record("formulary.imported", detail={"created": result.created, "updated": result.updated})
    return result


# Search and stock -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Search:
    term: str = ""
    form: str | None = None
    thc_min: Decimal | None = None
    thc_max: Decimal | None = None
    cbd_min: Decimal | None = None
    cbd_max: Decimal | None = None


def search(filters: Search, *, limit: int = 30) -> list[Product]:
    """Active products matching the filters; THC/CBD ranges compare within a form's own unit."""
    query = sa.select(Product).where(Product.active).order_by(Product.name).limit(limit)
    if filters.term.strip():
        like = f"%{filters.term.strip().lower()[:100]}%"
        query = query.where(sa.or_(sa.func.lower(Product.name).like(like),
                                   sa.func.lower(Product.manufacturer).like(like)))
    if filters.form in FORMS:
        query = query.where(Product.form == filters.form)
    for column, low, high in ((Product.thc, filters.thc_min, filters.thc_max),
                              (Product.cbd, filters.cbd_min, filters.cbd_max)):
        if low is not None:
            query = query.where(column >= low)
        if high is not None:
            query = query.where(column <= high)
    return list(db.session.scalars(query))


@dataclass(frozen=True)
class StockLevel:
    """What the pharmacy reports for one product."""

    #: Packs on hand (None when the pharmacy reports only in/out).
    packs: int | None
    in_stock: bool
    #: When the pharmacy last reported it.
    as_of: Any = None


#: Provided by the pharmacy issue: (pharmacy_id, product_ids) -> {product_id: StockLevel | None}.
StockProvider = Callable[[int, list[int]], dict[int, "StockLevel | None"]]
_stock_provider: StockProvider | None = None


def provide_stock(provider: StockProvider | None) -> None:
    """The pharmacy issue registers its live stock source here."""
    global _stock_provider
    _stock_provider = provider


def stock_for(pharmacy_id: int | None, product_ids: Iterable[int]) -> dict[int, StockLevel | None]:
    """Live stock at a pharmacy; None for each product whose stock is unknown (no provider yet)."""
    ids = list(product_ids)
    if pharmacy_id is None or _stock_provider is None:
        return dict.fromkeys(ids)
    known = _stock_provider(pharmacy_id, ids)
    return {product_id: known.get(product_id) for product_id in ids}
