"""Products and shopping goals, read from files in WebShop's layout.

A data directory holds WebShop's three files (each may also be gzipped, ``.json.gz``):

- products: ``items_shuffle_1000.json`` or ``items_shuffle.json``, a list of products with
  ``asin``, ``name``, ``pricing`` ("$12.99" or "$12.99 - $15.99"), ``customization_options``
  ({type: [{"value": ...}, ...]}), ``full_description``, ``small_description`` (bullet points),
  ``category``, ``query``, ``product_category``. The processed spelling of the same fields
  (``Title``, ``Description``, ``BulletPoints``, ``options``, a list ``pricing``) is read too.
- attributes: ``items_ins_v2_1000.json`` or ``items_ins_v2.json``, {asin: {"attributes": [...],
  "instruction": ..., "instruction_attributes": [...]}}.
- human instructions: ``items_human_ins.json``, {asin: [{"instruction": ...,
  "instruction_attributes": [...], "instruction_options": [...]}, ...]}.

The embedded default catalogue ships in the same layout under ``rewardflow_envs/data/webshop``.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import itertools
import json
import math
import random
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardflow_envs.envs.webshop.buttons import BUTTONS
from rewardflow_envs.kwargs import shown

EMBEDDED_DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "webshop"

PRODUCT_FILES = ("items_shuffle_1000.json", "items_shuffle.json")
ATTRIBUTE_FILES = ("items_ins_v2_1000.json", "items_ins_v2.json")
HUMAN_INSTRUCTION_FILES = ("items_human_ins.json",)

SPLITS = ("train", "test", "eval", "all")
# "webshop": WebShop's order (its goal list shuffled by random.seed(233)); test is the first 500
# goals, eval the next 1,000 (WebShop's baselines), train every goal after the test ones
# (verl-agent's, which GiGPO and RewardFlow train on). "hash": one goal in five is a test goal,
# decided by a hash of its id, fixed and independent of the order goals are read in.
SPLIT_SCHEMES = ("webshop", "hash")
WEBSHOP_SHUFFLE_SEED = 233
WEBSHOP_TEST_GOALS = 500
WEBSHOP_EVAL_GOALS = 1000
TEST_SHARE = 5
# WebShop's default price for a product with no price.
MISSING_PRICE = 100.0
# No budget: WebShop's bound when no price bound could be drawn.
NO_PRICE_BOUND = 1_000_000.0
# Characters outside the observation charset (controls, surrogates, beyond the BMP).
_UNPRINTABLE = re.compile("[^\t\n\x20-\ud7ff\ue000-\uffff]")


def printable(text: str) -> str:
    """`text` with every character the observation space cannot hold replaced by a space."""
    return _UNPRINTABLE.sub(" ", text)


@dataclass(frozen=True)
class Product:
    asin: str
    title: str
    prices: tuple[float, ...]  # one price, or the two ends of a price range
    options: tuple[tuple[str, tuple[str, ...]], ...]  # (type, values) in page order
    description: str
    features: tuple[str, ...]
    attributes: tuple[str, ...]
    category: str
    query: str
    product_category: str

    @property
    def price(self) -> float:
        """The price that counts against a budget: the low end of a range."""
        return self.prices[0]

    @property
    def price_text(self) -> str:
        """As WebShop prints it: each price as Python writes the float ("$12.5", "$100.0")."""
        return " to ".join(f"${price}" for price in self.prices)


@dataclass(frozen=True)
class Goal:
    task_id: str
    asin: str
    instruction: str
    attributes: tuple[str, ...]
    options: tuple[str, ...]  # wanted option values
    price_upper: float
    # Synthetic goals: the option type of each wanted value (WebShop's reward reads both).
    option_names: tuple[str, ...] = ()


class DataError(ValueError):
    """A WebShop data directory or file is missing or malformed."""


class Catalogue:
    """Every product and goal of one data directory."""

    def __init__(self, products: dict[str, Product], goals: list[Goal], source: str):
        self.products = products
        self.goals = tuple(goals)
        self.source = source
        self._goals_by_id = {goal.task_id: goal for goal in goals}
        self._splits: dict[tuple[str, str], tuple[Goal, ...]] = {}

    def split(self, name: str, scheme: str = "hash") -> tuple[Goal, ...]:
        """The goals of split `name` under `scheme` (see SPLIT_SCHEMES), in that split's order."""
        if (name, scheme) not in self._splits:
            self._splits[name, scheme] = self._split(name, scheme)
        return self._splits[name, scheme]

    def _split(self, name: str, scheme: str) -> tuple[Goal, ...]:
        if scheme not in SPLIT_SCHEMES:
            raise ValueError(f"unknown split scheme {scheme!r}; choose one of {SPLIT_SCHEMES}")
        if scheme == "hash":
            if name not in ("train", "test", "all"):
                raise ValueError(f"the hash split scheme has splits train, test, all, not {name!r}")
            return tuple(goal for goal in self.goals if name in ("all", split_of(goal.task_id)))
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; choose one of {SPLITS}")
        shuffled = list(self.goals)
        random.Random(WEBSHOP_SHUFFLE_SEED).shuffle(shuffled)  # random.seed(233); shuffle
        eval_end = WEBSHOP_TEST_GOALS + WEBSHOP_EVAL_GOALS
        ranges = {
            "test": slice(0, WEBSHOP_TEST_GOALS),
            "eval": slice(WEBSHOP_TEST_GOALS, eval_end),
            "train": slice(WEBSHOP_TEST_GOALS, None),
            "all": slice(None),
        }
        return tuple(shuffled[ranges[name]])

    def goal(self, task_id: str) -> Goal | None:
        return self._goals_by_id.get(task_id)


def split_of(task_id: str) -> str:
    digest = hashlib.sha256(task_id.encode("utf-8")).digest()
    return "test" if int.from_bytes(digest[:4], "big") % TEST_SHARE == 0 else "train"


def load_catalogue(data_dir: str | Path | None = None, human_goals: bool = True) -> Catalogue:
    """The catalogue in `data_dir` (the embedded one when None), read once per process."""
    directory = EMBEDDED_DATA_DIR if data_dir is None else Path(data_dir).expanduser().resolve()
    return _load_catalogue(directory, bool(human_goals))


@functools.lru_cache(maxsize=8)
def _load_catalogue(directory: Path, human_goals: bool) -> Catalogue:
    if not directory.is_dir():
        raise DataError(f"WebShop data directory {directory} does not exist")
    raw_products = _read_json(directory, PRODUCT_FILES, list)
    raw_attributes = _read_json(directory, ATTRIBUTE_FILES, dict)
    products = _parse_products(
        raw_products,
        raw_attributes,
        _found(directory, PRODUCT_FILES),
        _found(directory, ATTRIBUTE_FILES),
    )
    if human_goals:
        raw_instructions = _read_json(directory, HUMAN_INSTRUCTION_FILES, dict)
        goals = _human_goals(products, raw_instructions, _found(directory, HUMAN_INSTRUCTION_FILES))
    else:
        goals = _synthetic_goals(products, raw_attributes, _found(directory, ATTRIBUTE_FILES))
    if not goals:
        raise DataError(f"WebShop data directory {directory} defines no goals")
    return Catalogue(products, goals, str(directory))


def _found(directory: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        for path in (directory / name, directory / f"{name}.gz"):
            if path.is_file():
                return path
    return None


def _read_json(directory: Path, names: tuple[str, ...], kind: type) -> Any:
    path = _found(directory, names)
    if path is None:
        wanted = " or ".join(names)
        raise DataError(f"WebShop data directory {directory} has no {wanted}")
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as file:
            data = json.load(file)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: not a readable JSON file ({error})") from error
    if not isinstance(data, kind):
        raise DataError(f"{path}: expected a JSON {kind.__name__}, found {type(data).__name__}")
    return data


def _parse_products(
    raw: list, attributes: dict, path: Path | None, attributes_path: Path | None
) -> dict[str, Product]:
    products: dict[str, Product] = {}
    index_of: dict[str, tuple[int, str]] = {}  # lower-case asin -> (row, asin)
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise DataError(f"{path}: product {index} is not an object")
        asin = str(item.get("asin", ""))
        title = item.get("name", item.get("Title"))
        if not asin or title is None:
            raise DataError(f"{path}: product {index} has no 'asin' or 'name'")
        # WebShop skips these rows and keeps the first of duplicated asins.
        if asin == "nan" or len(asin) > 10 or asin in products:
            continue
        other = index_of.setdefault(asin.lower(), (index, asin))
        if other[1] != asin:
            raise DataError(
                f"{path}: products {other[0]} ({other[1]}) and {index} ({asin}) have asins that "
                "differ only in case; a click names a product in lower case, so one of them "
                "could never be opened"
            )
        options = _parse_options(item)
        _warn_unselectable(options, f"{path}: product {index} ({asin})")
        entry = attributes.get(asin)
        product_attributes = (
            _string_list(entry.get("attributes"), f"{attributes_path}: {asin}", "attributes")
            if isinstance(entry, dict)
            else ()
        )
        products[asin] = Product(
            asin=asin,
            title=printable(str(title)).strip(),
            prices=_parse_pricing(item.get("pricing"), f"{path}: product {index} ({asin})"),
            options=options,
            description=printable(str(item.get("full_description", item.get("Description")) or "")),
            features=_as_strings(item.get("small_description", item.get("BulletPoints"))),
            attributes=product_attributes,
            category=str(item.get("category") or ""),
            query=str(item.get("query") or "").lower().strip(),
            product_category=str(item.get("product_category") or ""),
        )
    return products


def _parse_pricing(pricing: Any, where: str) -> tuple[float, ...]:
    """One price or a range's two ends; WebShop's default price when there is none."""
    if pricing is None or pricing == "" or pricing == []:
        return (MISSING_PRICE,)
    if isinstance(pricing, str):
        parts = (re.sub(r"[^\d.]", "", part) for part in pricing.split("$")[1:])
        prices = [float(part) for part in parts if re.fullmatch(r"\d+(\.\d+)?", part)]
    else:
        prices = pricing if isinstance(pricing, list) else [pricing]
    # NaN, infinity and JSON's true would pass a budget check silently: refuse them.
    if not prices or not all(_is_price(price) for price in prices):
        raise DataError(
            f"{where}: 'pricing' must be a string such as '$12.99' or '$12.99 - $15.99', or "
            f"finite numbers >= 0, got {shown(pricing)}"
        )
    return tuple(float(price) for price in prices[:2])


def _is_price(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _parse_options(item: dict) -> tuple[tuple[str, tuple[str, ...]], ...]:
    raw = item.get("customization_options")
    if raw is None:
        raw = item.get("options")
    if not isinstance(raw, dict):
        return ()
    options = []
    for name, contents in raw.items():
        if not isinstance(contents, list):
            continue
        values = []
        for content in contents:
            value = content.get("value") if isinstance(content, dict) else content
            if value is None:
                continue
            # WebShop's spelling of option values: lower case, "/" shown as " | ".
            value = " ".join(printable(str(value)).replace("/", " | ").lower().split())
            if value and value not in values:
                values.append(value)
        if values:
            options.append((" ".join(printable(str(name)).lower().split()), tuple(values)))
    return tuple(options)


def _warn_unselectable(options: tuple[tuple[str, tuple[str, ...]], ...], where: str) -> None:
    for name, values in options:
        for value in values:
            if " ".join(value.split()) in BUTTONS:
                warnings.warn(
                    f"{where}: option {name!r} has the value {value!r}, the name of a page "
                    "button; a click on it presses the button, as in WebShop, so the value can "
                    "never be selected",
                    stacklevel=2,
                )


def _string_list(value: Any, where: str, field: str) -> tuple[str, ...]:
    """A list of strings from the data (missing: empty); anything else is a DataError naming
    the record, since iterating a string would give its letters."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise DataError(f"{where}: {field!r} must be a list of strings, got {value!r}")
    return tuple(printable(item) for item in value)


def _as_strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, list):
        return tuple(printable(str(item)) for item in value if item is not None)
    return (printable(str(value)),)


def price_bound(price: float, task_id: str) -> tuple[float, str]:
    """WebShop's budget: the larger of two of the four multiples of ten above the price.

    The two are drawn by an RNG seeded with the task id, so the bound is fixed per goal.
    """
    above = [10.0 * step for step in range(1, 100) if 10.0 * step > price][:4]
    if len(above) < 2:
        return NO_PRICE_BOUND, ""
    upper = max(random.Random(task_id).sample(above, 2))
    return upper, f", and price lower than {upper:.2f} dollars"


def _human_goals(products: dict[str, Product], raw: dict, path: Path | None) -> list[Goal]:
    goals = []
    for asin, product in products.items():
        records = raw.get(asin) or []
        if not isinstance(records, list):
            raise DataError(f"{path}: instructions of {asin} are not a list")
        for number, record in enumerate(records):
            if not isinstance(record, dict) or "instruction" not in record:
                raise DataError(f"{path}: instruction {number} of {asin} has no 'instruction'")
            where = f"{path}: instruction {number} of {asin}"
            attributes = _string_list(
                record.get("instruction_attributes"), where, "instruction_attributes"
            )
            if not attributes:  # WebShop skips goals with no attributes
                continue
            task_id = f"{asin}:h{number}"
            options = record.get("instruction_options")
            options = list(options.values()) if isinstance(options, dict) else options
            options = _string_list(options, where, "instruction_options")
            upper, price_text = _goal_price(record, product, task_id, where)
            goals.append(
                Goal(
                    task_id=task_id,
                    asin=asin,
                    instruction=printable(str(record["instruction"])).strip().strip(".")
                    + price_text,
                    attributes=attributes,
                    options=tuple(option.lower() for option in options),
                    price_upper=upper,
                )
            )
    return goals


def _goal_price(record: dict, product: Product, task_id: str, where: str) -> tuple[float, str]:
    upper = record.get("price_upper")
    if upper is None:
        return price_bound(product.price, task_id)
    if isinstance(upper, bool) or not isinstance(upper, (int, float)) or not 0 < upper < math.inf:
        raise DataError(f"{where}: 'price_upper' must be a positive number, got {upper!r}")
    return float(upper), f", and price lower than {float(upper):.2f} dollars"


def _synthetic_goals(products: dict[str, Product], raw: dict, path: Path | None) -> list[Goal]:
    """WebShop's synthetic goals: one per product and combination of its option values."""
    goals = []
    for asin, product in products.items():
        entry = raw.get(asin)
        if not isinstance(entry, dict) or not entry.get("instruction"):
            continue
        attributes = _string_list(
            entry.get("instruction_attributes"), f"{path}: {asin}", "instruction_attributes"
        )
        if not attributes:
            continue
        # WebShop orders a goal's options by name.
        names = sorted(name for name, _ in product.options)
        value_lists = [dict(product.options)[name] for name in names]
        for number, combination in enumerate(itertools.product(*value_lists)):
            task_id = f"{asin}:s{number}"
            wanted = ", and ".join(
                f"{name}: {value}" for name, value in zip(names, combination, strict=True)
            )
            upper, price_text = price_bound(product.price, task_id)
            goals.append(
                Goal(
                    task_id=task_id,
                    asin=asin,
                    instruction=printable(str(entry["instruction"]))
                    + (f" with {wanted}" if wanted else "")
                    + price_text,
                    attributes=attributes,
                    options=tuple(combination),
                    price_upper=upper,
                    option_names=tuple(names),
                )
            )
    return goals
