"""Builds the embedded default catalogue: products and instructions in WebShop's file layout.

    python -m rewardflow_envs.envs.webshop.generate rewardflow_envs/data/webshop

writes ``items_shuffle.json.gz``, ``items_ins_v2.json.gz`` and ``items_human_ins.json.gz``.
Everything comes from one seeded ``random.Random``, so the files are the same on every run.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
from dataclasses import dataclass
from pathlib import Path

SEED = 20220701
PRODUCTS_PER_CATEGORY = 50
INSTRUCTIONS_PER_PRODUCT = 2


@dataclass(frozen=True)
class CategorySpec:
    category: str  # WebShop's top-level category, the env's task_type
    query: str
    product_category: str
    noun: str
    brands: tuple[str, ...]
    styles: tuple[str, ...]
    materials: tuple[str, ...]
    attributes: tuple[str, ...]
    options: tuple[tuple[str, tuple[str, ...]], ...]
    price_range: tuple[float, float]


CATEGORIES = (
    CategorySpec(
        category="fashion",
        query="men's t-shirt",
        product_category="Clothing, Shoes & Jewelry › Men › Clothing › Shirts › T-Shirts",
        noun="T-Shirt",
        brands=("Northwind", "Ridgeline", "Harbor Pine", "Sunfield", "Outpost"),
        styles=("Crew Neck", "V-Neck", "Pocket", "Henley", "Graphic"),
        materials=("Cotton", "Cotton Blend", "Polyester", "Bamboo"),
        attributes=(
            "machine wash",
            "short sleeve",
            "slim fit",
            "relaxed fit",
            "moisture wicking",
            "tagless",
        ),
        options=(
            ("color", ("black", "white", "navy", "red", "heather grey", "olive")),
            ("size", ("small", "medium", "large", "x-large", "xx-large")),
        ),
        price_range=(8.0, 36.0),
    ),
    CategorySpec(
        category="fashion",
        query="running shoes",
        product_category="Clothing, Shoes & Jewelry › Women › Shoes › Athletic › Running",
        noun="Running Shoes",
        brands=("Stridewell", "Fleetfoot", "Trailmark", "Aerolite", "Pacer"),
        styles=("Road", "Trail", "Cushioned", "Lightweight", "Stability"),
        materials=("Mesh", "Knit", "Synthetic", "Leather"),
        attributes=(
            "non slip",
            "rubber sole",
            "arch support",
            "breathable",
            "memory foam",
            "wide width",
        ),
        options=(
            ("color", ("black", "white", "pink", "blue", "grey", "coral")),
            ("size", ("6", "7", "8", "9", "10", "11")),
        ),
        price_range=(35.0, 120.0),
    ),
    CategorySpec(
        category="grocery",
        query="ground coffee",
        product_category="Grocery & Gourmet Food › Beverages › Coffee › Ground Coffee",
        noun="Ground Coffee",
        brands=("Mountain Bean", "Copper Kettle", "Morning Ridge", "Black Anvil", "Solstice"),
        styles=("Light Roast", "Medium Roast", "Dark Roast", "Espresso Roast", "French Roast"),
        materials=("Arabica", "Colombian", "Sumatra", "Ethiopian"),
        attributes=("organic", "fair trade", "gluten free", "decaf", "non gmo", "kosher"),
        options=(
            ("flavor name", ("original", "vanilla", "hazelnut", "caramel", "mocha")),
            ("size", ("12 ounce", "24 ounce", "2 pound", "pack of 2", "pack of 3")),
        ),
        price_range=(7.0, 45.0),
    ),
    CategorySpec(
        category="home",
        query="scented candle",
        product_category="Home & Kitchen › Home Décor › Candles & Holders › Candles",
        noun="Scented Candle",
        brands=("Hearthglow", "Lumen Lane", "Wick & Wild", "Calm Harbor", "Emberly"),
        styles=("Jar", "Pillar", "Tin", "Three Wick", "Travel"),
        materials=("Soy Wax", "Coconut Wax", "Beeswax", "Paraffin Wax"),
        attributes=(
            "long lasting",
            "lead free",
            "natural ingredients",
            "hand poured",
            "cotton wick",
            "gift set",
        ),
        options=(
            ("scent", ("lavender", "vanilla bean", "sea salt", "cedarwood", "eucalyptus")),
            ("size", ("4 oz", "8 oz", "14 oz", "22 oz")),
        ),
        price_range=(9.0, 48.0),
    ),
    CategorySpec(
        category="electronics",
        query="phone case",
        product_category="Electronics › Cell Phones & Accessories › Cases, Holsters & Sleeves",
        noun="Phone Case",
        brands=("Armorix", "ClearShell", "Gripster", "Novaguard", "Pocketline"),
        styles=("Slim", "Rugged", "Wallet", "Clear", "Folio"),
        materials=("Silicone", "TPU", "Leather", "Polycarbonate"),
        attributes=(
            "shockproof",
            "wireless charging",
            "raised edges",
            "anti scratch",
            "kickstand",
            "card holder",
        ),
        options=(
            ("color", ("black", "clear", "midnight blue", "rose gold", "forest green")),
            ("style", ("iphone 13", "iphone 14", "iphone 15", "galaxy s23", "pixel 8")),
        ),
        price_range=(6.0, 40.0),
    ),
    CategorySpec(
        category="beauty",
        query="face moisturizer",
        product_category="Beauty & Personal Care › Skin Care › Face › Creams & Moisturizers",
        noun="Face Moisturizer",
        brands=("Dewline", "Purely Bloom", "Skinwise", "Aurelle", "Velvet Fern"),
        styles=("Daily", "Night", "Gel", "Whipped", "Tinted"),
        materials=("Hyaluronic Acid", "Aloe Vera", "Shea Butter", "Vitamin C"),
        attributes=(
            "fragrance free",
            "cruelty free",
            "paraben free",
            "sensitive skin",
            "oil free",
            "spf 30",
        ),
        options=(("size", ("1 fl oz", "1.7 fl oz", "2.5 fl oz", "3.4 fl oz")),),
        price_range=(10.0, 65.0),
    ),
)

_TEMPLATES = (
    "i need a {material}{noun} that is {attributes}, {options}",
    "i'm looking for a {material}{noun} with {attributes}, {options}",
    "looking for a {attributes} {material}{noun}, {options}",
    "can you find me a {material}{noun}? it should be {attributes}, {options}",
)


def _asin(rng: random.Random, taken: set[str]) -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
    while True:
        asin = "B0" + "".join(rng.choice(alphabet) for _ in range(8))
        if asin not in taken:
            taken.add(asin)
            return asin


def _price(rng: random.Random, low: float, high: float) -> float:
    return round(rng.uniform(low, high), 0) - 0.01


def _product(
    rng: random.Random, spec: CategorySpec, brand: str, style: str, material: str, asin: str
) -> tuple[dict, dict, list]:
    attributes = rng.sample(spec.attributes, 3)
    options = {
        name: sorted(rng.sample(values, rng.randint(3, len(values))), key=values.index)
        for name, values in spec.options
    }
    title = f"{brand} {material} {style} {spec.noun}, {attributes[0].title()}"
    price = _price(rng, *spec.price_range)
    pricing = f"${price:.2f}"
    if rng.random() < 0.15:
        pricing += f" - ${price + rng.randint(3, 10):.2f}"
    features = [
        f"{attributes[1].capitalize()} and {attributes[2]}: made to last",
        f"{material} {spec.noun.lower()} in a {style.lower()} design by {brand}",
        "Available in " + "; ".join(f"{len(values)} {name}s" for name, values in options.items()),
    ]
    description = (
        f"The {brand} {style.lower()} {spec.noun.lower()} is made of {material.lower()}. "
        f"It is {attributes[0]}, {attributes[1]} and {attributes[2]}."
    )
    product = {
        "asin": asin,
        "name": title,
        "pricing": pricing,
        "customization_options": {
            name: [{"value": value, "image": None} for value in values]
            for name, values in options.items()
        },
        "full_description": description,
        "small_description": features,
        "category": spec.category,
        "query": spec.query,
        "product_category": spec.product_category,
        # WebShop's loader reads images[0] as the main image; there is none here.
        "images": [""],
    }
    synthetic = {
        "attributes": attributes,
        "instruction": f"i want a {spec.noun.lower()} that is {attributes[0]} and {attributes[1]}",
        "instruction_attributes": attributes[:2],
    }
    human = [
        _instruction(rng, spec, material, attributes, options, asin)
        for _ in range(INSTRUCTIONS_PER_PRODUCT)
    ]
    return product, synthetic, human


def _instruction(
    rng: random.Random,
    spec: CategorySpec,
    material: str,
    attributes: list[str],
    options: dict[str, list[str]],
    asin: str,
) -> dict:
    wanted_attributes = rng.sample(attributes, 2)
    wanted_options = [rng.choice(values) for values in options.values()]
    with_material = rng.random() < 0.5
    text = rng.choice(_TEMPLATES).format(
        material=f"{material.lower()} " if with_material else "",
        noun=spec.noun.lower(),
        attributes=" and ".join(wanted_attributes),
        options=" and ".join(
            f"{name} {value}" for name, value in zip(options, wanted_options, strict=True)
        ),
    )
    return {
        "asin": asin,
        "instruction": text,
        "instruction_attributes": wanted_attributes + ([material.lower()] if with_material else []),
        "instruction_options": wanted_options,
    }


def generate() -> dict[str, object]:
    """The three files' contents, keyed by file name."""
    rng = random.Random(SEED)
    products, synthetic, human = [], {}, {}
    taken: set[str] = set()
    for spec in CATEGORIES:
        combinations = [
            (brand, style, material)
            for brand in spec.brands
            for style in spec.styles
            for material in spec.materials
        ]
        for brand, style, material in rng.sample(combinations, PRODUCTS_PER_CATEGORY):
            asin = _asin(rng, taken)
            product, synthetic[asin], human[asin] = _product(
                rng, spec, brand, style, material, asin
            )
            products.append(product)
    rng.shuffle(products)  # like items_shuffle.json: categories interleaved
    return {
        "items_shuffle.json.gz": products,
        "items_ins_v2.json.gz": synthetic,
        "items_human_ins.json.gz": human,
    }


def write(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in generate().items():
        # mtime=0 keeps the gzip bytes identical from run to run.
        with (
            open(directory / name, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as file,
        ):
            file.write(json.dumps(content, indent=0, ensure_ascii=False).encode("utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    write(parser.parse_args().directory)


if __name__ == "__main__":
    main()
