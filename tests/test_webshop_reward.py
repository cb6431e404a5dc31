"""WebShop's purchase reward: a table of purchases against one goal, and the same in the env."""

from __future__ import annotations

import pytest

pytest.importorskip("rapidfuzz")

from rewardflow_envs.envs.webshop.catalogue import Goal, Product  # noqa: E402
from rewardflow_envs.envs.webshop.reward import (  # noqa: E402
    normalize_color,
    purchase_reward,
    token_set_ratio,
    type_reward,
)


@pytest.fixture(autouse=True)
def fallback_nouns(monkeypatch):
    """The expected values below are the fallback nouns'; where spaCy's model is installed the
    tagger would be used, so the tests that want it say so."""
    from rewardflow_envs.envs.webshop import reward

    monkeypatch.setattr(reward, "_tagger", lambda: None)


SHIRT = Product(
    asin="B0SHIRT001",
    title="Northwind Cotton Crew Neck T-Shirt, Slim Fit",
    prices=(19.99,),
    options=(("color", ("red", "navy")), ("size", ("small", "medium", "x-large"))),
    description="A cotton shirt.",
    features=("Machine wash cold",),
    attributes=("machine wash", "slim fit"),
    category="fashion",
    query="men's t-shirt",
    product_category="Clothing › Men › Shirts › T-Shirts",
)
GOAL = Goal(
    task_id="B0SHIRT001:h0",
    asin=SHIRT.asin,
    instruction="i need a slim fit cotton t-shirt, color red and size medium",
    attributes=("slim fit", "cotton"),
    options=("red", "medium"),
    price_upper=30.0,
)


def variant(**changes) -> Product:
    fields = {**SHIRT.__dict__, **changes}
    return Product(**fields)


# (what was bought, selected options, expected reward, expected r_type)
TABLE = {
    "goal product, goal options": (SHIRT, {"color": "red", "size": "medium"}, 1.0, 1.0),
    "wrong colour": (SHIRT, {"color": "navy", "size": "medium"}, 4 / 5, 1.0),
    "no options chosen": (SHIRT, {}, 3 / 5, 1.0),
    # Colours are normalised to the first of WebShop's colour words they contain: "dark red"
    # is "dark", which is not "red".
    "colour normalised first": (SHIRT, {"color": "dark red", "size": "medium"}, 4 / 5, 1.0),
    "colour normalised to the wanted one": (
        SHIRT,
        {"color": "bright red", "size": "medium"},
        1.0,
        1.0,
    ),
    "over the price bound": (
        variant(prices=(34.99,)),
        {"color": "red", "size": "medium"},
        4 / 5,
        1.0,
    ),
    "price range counts from its low end": (
        variant(prices=(29.99, 39.99)),
        {"color": "red", "size": "medium"},
        1.0,
        1.0,
    ),
    "same kind, missing an attribute": (
        variant(
            asin="B0SHIRT002",
            title="Ridgeline Polyester Crew Neck T-Shirt",
            attributes=("machine wash",),
            description="A shirt.",
        ),
        {"color": "red", "size": "medium"},
        3 / 5,
        1.0,
    ),
    "other kind of product": (
        variant(
            asin="B0COFFEE01",
            title="Mountain Bean Arabica Ground Coffee",
            query="ground coffee",
            product_category="Grocery › Coffee",
            attributes=("organic",),
            description="Coffee.",
        ),
        {"color": "red", "size": "medium"},
        0.0,
        0.0,
    ),
}


@pytest.mark.parametrize("case", TABLE)
def test_reward_table(case):
    bought, options, expected, expected_type = TABLE[case]
    breakdown = purchase_reward(bought, options, GOAL, SHIRT)
    assert breakdown.reward == pytest.approx(expected)
    assert breakdown.r_type == expected_type
    assert 0.0 <= breakdown.reward <= 1.0


def test_type_reward_levels():
    # 1 of 8 title words shared, no common query or category path: 0.5.
    loose = variant(title="Cotton Bath Towel", query="towel", product_category="Home › Bath")
    assert type_reward(loose, SHIRT) == 0.5
    # Same query rescues a title that shares few words.
    same_query = variant(title="Harbor Pine Graphic Tee Shirt", product_category="")
    assert type_reward(same_query, SHIRT) == 1.0
    # Under a tenth of the goal title's words: 0.1, whatever else matches.
    long_goal = variant(title="alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo")
    assert type_reward(variant(title="alpha"), long_goal) == 0.1


# (selected value, wanted value, whether WebShop counts the option), checked against
# web_agent_site/engine/goal.py's get_option_reward with thefuzz: token-set ratios above 85 on
# colour-normalised values, for sizes too.
OPTION_CASES = [
    ("x-large", "xx-large", True),  # ratio 93
    ("large", "x-large", True),  # one's words are all in the other's: 100
    ("8", "8.5", True),
    ("1 fl oz", "1.7 fl oz", True),
    ("navy", "light blue", False),  # "light blue" is "blue"
    ("heather grey", "grey", True),
    ("king", "queen", False),
    ("Café", "cafe", True),  # non-ASCII letters dropped: "caf" against "cafe", 86
    ("3 pack", "pack of 3", True),
]


@pytest.mark.parametrize(("selected", "wanted", "counted"), OPTION_CASES)
def test_options_are_matched_as_webshop_matches_them(selected, wanted, counted):
    goal = Goal(**{**GOAL.__dict__, "options": (wanted,)})
    breakdown = purchase_reward(SHIRT, {"size": selected}, goal, SHIRT)
    assert breakdown.options_matched == int(counted)


def test_attributes_are_matched_fuzzily_then_in_the_text():
    # "machine washable" against the product's "machine wash": ratio 86; "cotton" is in the
    # title; "organic" is nowhere.
    goal = Goal(**{**GOAL.__dict__, "attributes": ("machine washable", "cotton", "organic")})
    assert purchase_reward(SHIRT, {}, goal, SHIRT).attributes_matched == 2


def test_a_selected_option_the_goal_did_not_ask_for_counts_for_nothing():
    # WebShop counts wanted options only, even when a selected value is in the product's text.
    goal = Goal(**{**GOAL.__dict__, "options": ("medium",)})
    breakdown = purchase_reward(SHIRT, {"color": "cotton", "size": "medium"}, goal, SHIRT)
    assert breakdown.options_matched == 1 and breakdown.reward == 1.0


def test_synthetic_goals_compare_the_name_and_value_pair_as_webshop_does():
    # WebShop passes a synthetic goal's options as (name, value) pairs: the pair's text, not
    # the value, is matched, unless the name or value is one of its colour words.
    goal = Goal(
        **{**GOAL.__dict__, "options": ("red", "crew neck"), "option_names": ("color", "style")}
    )
    neck = purchase_reward(SHIRT, {"color": "red", "style": "neck"}, goal, SHIRT)
    crew = purchase_reward(SHIRT, {"color": "red", "style": "crew neck"}, goal, SHIRT)
    # "neck" against "('style', 'crew neck')": its one word is among the pair's: 100.
    assert (neck.options_matched, crew.options_matched) == (2, 2)
    human = Goal(**{**GOAL.__dict__, "options": ("red", "crew neck")})
    assert (
        purchase_reward(SHIRT, {"color": "red", "style": "collar"}, human, SHIRT).options_matched
        == 1
    )


def test_title_nouns_come_from_the_tagger_when_one_is_installed(monkeypatch):
    from rewardflow_envs.envs.webshop import reward

    class Token:
        def __init__(self, text, pos):
            self.text, self.pos_ = text, pos

    tags = {"Slim": "ADJ", "Fit": "NOUN", "Northwind": "PROPN", "Shirt": "NOUN", "Tee": "NOUN"}

    def tagger(title):
        return [Token(word, tags.get(word, "ADJ")) for word in title.replace(",", "").split()]

    monkeypatch.setattr(reward, "_tagger", lambda: tagger)
    assert reward.title_nouns("Northwind Slim Fit Shirt, Shirt") == [
        "northwind",
        "fit",
        "shirt",
        "shirt",
    ]
    # Repeats count in the goal's nouns: 1 shared of 4 is 0.25 (> 0.2), 1 of 5 would not be.
    goal = variant(title="Northwind Slim Fit Shirt, Shirt", query="x", product_category="")
    assert type_reward(variant(title="Shirt", query="y", product_category=""), goal) == 1.0
    goal = variant(title="Northwind Fit Fit Shirt, Shirt", query="x", product_category="")
    assert type_reward(variant(title="Shirt", query="y", product_category=""), goal) == 0.5


def test_env_reward_matches_the_formula_for_a_wrong_option():
    pytest.importorskip("bm25s")
    from rewardflow_envs.envs.webshop import WebShopEnv
    from rewardflow_envs.envs.webshop.expert import goal_option_choices

    env = WebShopEnv(split="test", expert=True)
    task = next(i for i, goal in enumerate(env.goals) if len(goal.options) == 2)
    _, info = env.reset(options={"task": task})
    while info["state_key"][1] != "item":
        _, _, _, _, info = env.step(info["expert_action"])
    product = env.catalogue.products[env.goal.asin]
    choices = goal_option_choices(product, env.goal)
    name, wanted = next(iter(choices.items()))
    wrong = next(
        value
        for option, values in product.options
        if option == name
        for value in values
        if token_set_ratio(normalize_color(value), normalize_color(wanted)) <= 85
    )
    for option, value in choices.items():
        env.step(f"<action>click[{wrong if option == name else value}]</action>")
    _, reward, terminated, _, info = env.step("<action>click[buy now]</action>")
    goal = env.goal
    expected = (len(goal.attributes) + 1 + 1) / (len(goal.attributes) + 2 + 1)
    assert terminated and reward == pytest.approx(expected)
    assert info["won"] is False and info["reward_breakdown"]["options_matched"] == 1


def test_the_fallback_nouns_give_the_taggers_type_reward_on_the_shipped_catalogue(monkeypatch):
    """Where spaCy's en_core_web_sm is installed: the tagger's nouns and the fallback give the
    same r_type for every goal product against every product of its category and the next."""
    spacy = pytest.importorskip("spacy")
    try:
        tagger = spacy.load("en_core_web_sm")
    except OSError:
        pytest.skip("en_core_web_sm is not installed")
    from rewardflow_envs.envs.webshop import reward
    from rewardflow_envs.envs.webshop.catalogue import load_catalogue

    products = list(load_catalogue(None, True).products.values())
    pairs = [(a, b) for i, a in enumerate(products) for b in products[i : i + 60]]
    fallback = [reward.type_reward(b, a) for a, b in pairs]
    monkeypatch.setattr(reward, "_tagger", lambda: tagger)
    tagged = [reward.type_reward(b, a) for a, b in pairs]
    agree = sum(x == y for x, y in zip(tagged, fallback, strict=True)) / len(pairs)
    assert agree == 1.0, f"r_type agrees on {agree:.3f} of {len(pairs)} pairs"
