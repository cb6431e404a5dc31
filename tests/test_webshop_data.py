"""Reading WebShop's own file layout (items_shuffle / items_ins_v2 / items_human_ins)."""

from __future__ import annotations

import gzip
import json
import sys

import pytest

pytest.importorskip("bm25s")
pytest.importorskip("rapidfuzz")  # the webshop extra: both

from rewardflow_envs.envs.webshop import DataError, WebShopEnv, load_catalogue  # noqa: E402
from rewardflow_envs.extras import MissingExtraError  # noqa: E402

PRODUCTS = [
    {
        "asin": "B000000001",
        "name": "Acme Cotton Crew T-Shirt",
        "pricing": "$12.99",
        "customization_options": {
            "Color": [{"value": "Red", "image": "http://img/1"}, {"value": "Navy/White"}],
            "Size": [{"value": "Medium", "image": None}],
            "Pattern": None,
        },
        "full_description": "A soft shirt.",
        "small_description": ["Soft cotton", "Machine wash"],
        "category": "fashion",
        "query": "T-Shirt ",
        "product_category": "Clothing › Men › Shirts",
        "images": ["http://img/1"],
    },
    {
        "asin": "B000000002",
        "name": "Acme Dark Roast Coffee",
        "pricing": "$8.00 - $15.50",
        "customization_options": None,
        "full_description": "Bold coffee.",
        "small_description": "Whole bean",
        "category": "grocery",
        "query": "coffee",
        "product_category": "Grocery › Coffee",
    },
    {"asin": "B000000001", "name": "duplicate, skipped", "pricing": "$1.00"},
    {"asin": "nan", "name": "no asin, skipped"},
    {"asin": "B000000003", "name": "Acme Mystery Box", "pricing": ""},
]
ATTRIBUTES = {
    "B000000001": {
        "attributes": ["machine wash", "cotton"],
        "instruction": "i want a shirt",
        "instruction_attributes": ["machine wash"],
    },
    "B000000002": {
        "attributes": ["dark roast"],
        "instruction": "i want coffee",
        "instruction_attributes": ["dark roast"],
    },
}
HUMAN = {
    "B000000001": [
        {
            "asin": "B000000001",
            "instruction": "i need a cotton t-shirt in red, size medium.",
            "instruction_attributes": ["cotton"],
            "instruction_options": ["red", "medium"],
        },
        {
            "asin": "B000000001",
            "instruction": "no attributes: skipped like WebShop does",
            "instruction_attributes": [],
            "instruction_options": [],
        },
    ],
    "B000000002": [
        {
            "asin": "B000000002",
            "instruction": "dark roast coffee",
            "instruction_attributes": ["dark roast"],
            "instruction_options": [],
            "price_upper": 20.0,
        },
    ],
}
FILES = {
    "items_shuffle_1000.json": PRODUCTS,
    "items_ins_v2_1000.json": ATTRIBUTES,
    "items_human_ins.json": HUMAN,
}


def write_tree(directory, files=FILES, compress=False):
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        text = json.dumps(content)
        if compress:
            with gzip.open(directory / f"{name}.gz", "wt", encoding="utf-8") as file:
                file.write(text)
        else:
            (directory / name).write_text(text, encoding="utf-8")
    return directory


def test_products_are_read_in_webshop_form(tmp_path):
    catalogue = load_catalogue(str(write_tree(tmp_path)))
    assert list(catalogue.products) == ["B000000001", "B000000002", "B000000003"]
    shirt = catalogue.products["B000000001"]
    assert shirt.options == (("color", ("red", "navy | white")), ("size", ("medium",)))
    assert shirt.prices == (12.99,) and shirt.attributes == ("machine wash", "cotton")
    assert shirt.features == ("Soft cotton", "Machine wash") and shirt.query == "t-shirt"
    coffee = catalogue.products["B000000002"]
    assert coffee.prices == (8.0, 15.5) and coffee.price_text == "$8.0 to $15.5"
    assert coffee.features == ("Whole bean",) and coffee.options == ()
    assert catalogue.products["B000000003"].prices == (100.0,)


def test_human_goals_are_read_with_webshop_price_bounds(tmp_path):
    catalogue = load_catalogue(str(write_tree(tmp_path)))
    shirt_goal, coffee_goal = catalogue.goals
    assert shirt_goal.task_id == "B000000001:h0"
    assert shirt_goal.options == ("red", "medium") and shirt_goal.attributes == ("cotton",)
    # Two of the four multiples of ten above $12.99 are drawn; the bound is the larger one.
    assert shirt_goal.price_upper in (30.0, 40.0, 50.0)
    assert shirt_goal.instruction == (
        f"i need a cotton t-shirt in red, size medium, and price lower than "
        f"{shirt_goal.price_upper:.2f} dollars"
    )
    assert coffee_goal.price_upper == 20.0
    assert coffee_goal.instruction.endswith("price lower than 20.00 dollars")


def test_synthetic_goals_cover_every_option_combination(tmp_path):
    catalogue = load_catalogue(str(write_tree(tmp_path)), human_goals=False)
    shirt_goals = [goal for goal in catalogue.goals if goal.asin == "B000000001"]
    assert [goal.options for goal in shirt_goals] == [("red", "medium"), ("navy | white", "medium")]
    assert shirt_goals[0].instruction.startswith("i want a shirt with color: red, and size: medium")
    coffee_goals = [goal for goal in catalogue.goals if goal.asin == "B000000002"]
    assert len(coffee_goals) == 1 and coffee_goals[0].options == ()


def test_env_plays_a_real_layout_tree_from_the_kwarg_or_the_env_var(tmp_path, monkeypatch):
    directory = write_tree(tmp_path / "webshop")
    monkeypatch.setenv("WEBSHOP_DATA", str(directory))
    for env in (
        WebShopEnv(split="all", expert=True),
        WebShopEnv(split="all", data_path=str(directory), expert=True),
    ):
        assert env.catalogue.source == str(directory.resolve())
        for task in range(len(env.goals)):
            _, info = env.reset(options={"task": task})
            terminated = False
            while not terminated:
                _, reward, terminated, _, info = env.step(info["expert_action"])
            # WebShop's files default to verl-agent's reward: 10 for a score of 1.
            assert (reward, info["score"], info["won"]) == (10.0, 1.0, True)


def many_goals_tree(directory, products=30):
    """`products` products with 8 colours x 7 sizes each: 56 synthetic goals apiece."""
    items, attributes = [], {}
    for number in range(products):
        asin = f"B{number:09d}"
        items.append({
            "asin": asin, "name": f"Acme Shirt {number}", "pricing": "$10.00",
            "customization_options": {
                "Size": [{"value": f"size {size}"} for size in range(7)],
                "Color": [{"value": f"colour {colour}"} for colour in range(8)],
            },
            "full_description": "", "small_description": [], "category": "fashion",
            "query": "shirt", "product_category": "Clothing",
        })  # fmt: skip
        attributes[asin] = {
            "attributes": ["cotton"], "instruction": f"i want shirt {number}",
            "instruction_attributes": ["cotton"],
        }  # fmt: skip
    return write_tree(directory, {**FILES, "items_shuffle_1000.json": items,
                                  "items_ins_v2_1000.json": attributes})  # fmt: skip


def test_webshop_files_default_to_its_split_of_synthetic_goals(tmp_path):
    """WebShop's text env: synthetic goals in product order, each product's option names
    sorted, then random.seed(233); random.shuffle(goals); test is goals[:500]; its baselines'
    eval goals[500:1500]; verl-agent trains on goals[500:]."""
    import itertools
    import random

    directory = many_goals_tree(tmp_path)
    ours = {split: WebShopEnv(data_path=str(directory), split=split).goals for split in
            ("test", "eval", "train", "all")}  # fmt: skip
    expected = []
    for number in range(30):  # option names sorted: color before size
        for colour, size in itertools.product(range(8), range(7)):
            expected.append((f"B{number:09d}", (f"colour {colour}", f"size {size}")))
    state = random.getstate()
    try:
        random.seed(233)
        random.shuffle(expected)
    finally:
        random.setstate(state)
    as_pairs = {split: [(g.asin, g.options) for g in goals] for split, goals in ours.items()}
    assert as_pairs["test"] == expected[:500]
    assert as_pairs["eval"] == expected[500:1500]
    assert as_pairs["train"] == expected[500:] and as_pairs["all"] == expected
    env = WebShopEnv(data_path=str(directory), split="test")
    assert (env.split_scheme, env.reward_mode) == ("webshop", "success")
    with pytest.raises(ValueError, match="no task .* in the 'test' split"):
        env.reset(options={"task": ours["train"][-1].task_id})


def test_the_other_settings_stay_available(tmp_path):
    directory = str(many_goals_tree(tmp_path))
    human = WebShopEnv(data_path=directory, split="all", human_goals=True)
    assert sorted(goal.task_id for goal in human.goals) == ["B000000001:h0", "B000000002:h0"]
    hashed = WebShopEnv(data_path=directory, split="test", split_scheme="hash")
    assert 0 < len(hashed.goals) < 1680 / 3
    embedded = WebShopEnv(split="test")
    assert (embedded.split_scheme, embedded.reward_mode) == ("hash", "score")
    with pytest.raises(ValueError, match="hash split scheme has splits train, test, all"):
        WebShopEnv(split="eval")
    with pytest.raises(ValueError, match="unknown reward_mode 'won'"):
        WebShopEnv(reward_mode="won")


def test_the_success_reward_pays_only_a_perfect_purchase_and_reports_the_score(tmp_path):
    env = WebShopEnv(split="test", reward_mode="success", success_reward=10.0, expert=True)
    _, info = env.reset(options={"task": 0})
    while info.get("expert_action"):
        _, reward, terminated, _, info = env.step(info["expert_action"])
    assert terminated and (reward, info["score"]) == (10.0, 1.0)
    task = next(i for i, goal in enumerate(env.goals) if goal.options)
    _, info = env.reset(options={"task": task})
    while info["state_key"][1] != "item":  # to the goal product's page, no option chosen
        _, _, _, _, info = env.step(info["expert_action"])
    _, reward, terminated, _, info = env.step("<action>click[buy now]</action>")
    assert terminated and reward == 0.0 and 0.0 < info["score"] < 1.0 and not info["won"]


def test_gzipped_files_and_full_size_names_are_read(tmp_path):
    files = {name.replace("_1000", ""): content for name, content in FILES.items()}
    catalogue = load_catalogue(str(write_tree(tmp_path, files, compress=True)))
    assert len(catalogue.products) == 3 and len(catalogue.goals) == 2


def test_missing_directory_is_named(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=f"{missing}.*does not exist"):
        load_catalogue(str(missing))
    with pytest.raises(DataError, match="does not exist"):
        WebShopEnv(data_path=str(missing))


@pytest.mark.parametrize(
    "left_out, named",
    [
        ("items_shuffle_1000.json", "items_shuffle_1000.json or items_shuffle.json"),
        ("items_ins_v2_1000.json", "items_ins_v2_1000.json or items_ins_v2.json"),
        ("items_human_ins.json", "items_human_ins.json"),
    ],
)
def test_missing_file_is_named(tmp_path, left_out, named):
    files = {name: content for name, content in FILES.items() if name != left_out}
    directory = write_tree(tmp_path, files)
    with pytest.raises(DataError, match=f"{directory} has no {named}"):
        load_catalogue(str(directory))


def test_malformed_files_are_named(tmp_path):
    broken = write_tree(tmp_path / "broken")
    (broken / "items_human_ins.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match="items_human_ins.json: not a readable JSON file"):
        load_catalogue(str(broken))

    wrong_type = write_tree(tmp_path / "wrong_type", {**FILES, "items_shuffle_1000.json": {}})
    with pytest.raises(DataError, match="items_shuffle_1000.json: expected a JSON list"):
        load_catalogue(str(wrong_type))

    no_asin = write_tree(
        tmp_path / "no_asin", {**FILES, "items_shuffle_1000.json": [{"name": "nameless"}]}
    )
    with pytest.raises(DataError, match="items_shuffle_1000.json: product 0 has no 'asin'"):
        load_catalogue(str(no_asin))


def human_record(**fields):
    record = {"instruction": "i need a red cotton shirt", "instruction_attributes": ["cotton"]}
    return {**FILES, "items_human_ins.json": {"B000000001": [{**record, **fields}]}}


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            human_record(instruction_options="red"),
            r"of B000000001: 'instruction_options' must be a list of strings, got 'red'",
        ),
        (
            human_record(instruction_attributes="cotton"),
            r"instruction 0 of B000000001: 'instruction_attributes' must be a list of strings",
        ),
        (
            human_record(price_upper=float("nan")),
            r"instruction 0 of B000000001: 'price_upper' must be a positive number, got nan",
        ),
        (
            {**FILES, "items_ins_v2_1000.json": {"B000000001": {"attributes": "cotton"}}},
            r"items_ins_v2_1000.json: B000000001: 'attributes' must be a list of strings",
        ),
        (
            {
                **FILES,
                "items_shuffle_1000.json": PRODUCTS + [{"asin": "b000000002", "name": "Twin"}],
            },
            r"products 1 \(B000000002\) and 5 \(b000000002\) have asins that differ only in case",
        ),
    ],
    ids=["options-string", "attributes-string", "nan-price", "product-attributes", "asin-case"],
)
def test_records_of_the_wrong_shape_are_named_not_misread(tmp_path, files, message):
    with pytest.raises(DataError, match=message):
        load_catalogue(str(write_tree(tmp_path, files)))


def test_an_option_value_named_like_a_button_is_reported(tmp_path):
    product = {
        **PRODUCTS[0],
        "asin": "B000000009",
        "customization_options": {"Style": [{"value": "Buy Now"}, {"value": "plain"}]},
    }
    files = {**FILES, "items_shuffle_1000.json": PRODUCTS + [product]}
    with pytest.warns(
        UserWarning, match=r"product 5 \(B000000009\): option 'style' has the value 'buy now'"
    ):
        load_catalogue(str(write_tree(tmp_path, files)))


def test_missing_bm25s_names_the_extra_at_make_time(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "bm25s", None)
    with pytest.raises(MissingExtraError, match=r'pip install "rewardflow\[webshop\]"'):
        WebShopEnv(split="all", data_path=str(write_tree(tmp_path)))
