"""The purchase reward, computed as WebShop's ``web_agent_site/engine/goal.py`` computes it.

    reward = r_type * (attributes matched + options matched + price ok)
                    / (goal attributes + goal options + 1)

- attribute: a goal attribute matches when one of the product's attributes has a fuzzy
  token-set ratio above 85 with it, or when it appears in the product's title, features or
  description (lower-cased; the attribute as written);
- option: a goal option counts when one of the selected option values has a fuzzy token-set
  ratio above 85 with it, both colour-normalised (the first of WebShop's colour words each
  contains). WebShop's synthetic goals keep their options as {name: value}, and its code
  compares each selected value with the text of the (name, value) pair, unless the name or the
  value is itself one of its colour words; so does this one;
- price: 1 when the product's price (low end of a range) is at most the goal's bound;
- r_type, whether it is the same kind of product: 1.0 when the products share their search
  query, two levels of their category path, or more than 20% of the goal title's nouns; 0.5
  otherwise; 0.1 when under 10% of them are shared; 0.0 when none is.

The ratio is thefuzz's ``fuzz.token_set_ratio`` (non-ASCII dropped, rapidfuzz's default
processing, rounded to an integer), computed with rapidfuzz. The title nouns are spaCy's
(``en_core_web_sm``, tokens tagged NOUN or PROPN) when spaCy and that model are installed;
otherwise every alphabetic word of the title but a short list of function words, which is what
the tagger returns for the title-cased product names of the catalogues (see docs/envs/webshop.md).
"""

from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass

from rewardflow_envs.envs.webshop.catalogue import Goal, Product
from rewardflow_envs.extras import require

FUZZY_THRESHOLD = 85
NOUN_TAGS = ("PNOUN", "NOUN", "PROPN")  # WebShop's list ("PNOUN" is no spaCy tag)
SPACY_MODEL = "en_core_web_sm"
# WebShop's web_agent_site/engine/normalize.py, in its order: the first one contained wins.
COLOR_SET = (
    "alabaster apricot aqua ash asphalt azure banana beige black blue blush bordeaux bronze "
    "brown burgundy camel camo caramel champagne charcoal cheetah chestnut chocolate christmas "
    "coffee cognac copper coral cranberry cream crystal dark denim eggplant elephant espresso "
    "fuchsia gold granite grape graphite grass gray green grey heather indigo ivory ivy khaki "
    "lavender lemon leopard light lilac lime magenta maroon mauve merlot midnight mint mocha "
    "multicolor mushroom mustard natural navy nude olive orange peach pewter pink plum purple "
    "rainbow red rose royal rust sand sapphire seashell silver skull slate steel stone stonewash "
    "sunflower tan taupe teal tiger turquoise violet walnut wheat white wine yellow"
).split()
# Words spaCy tags as determiners, prepositions, conjunctions, pronouns or auxiliaries.
_FUNCTION_WORDS = frozenset(
    "a an and are as at be by for from in into is it its of on or over the this to under "
    "up with without".split()
)
_TITLE_WORD = re.compile(r"[^\W\d_]+")
_NON_ASCII = {code: None for code in range(128, 256)}


@dataclass(frozen=True)
class RewardBreakdown:
    r_type: float
    attributes_matched: int
    options_matched: int
    price_ok: bool
    reward: float

    def as_dict(self) -> dict:
        return asdict(self)


def normalize_color(value: str) -> str:
    return next((color for color in COLOR_SET if color in value), value)


def token_set_ratio(a: str, b: str) -> int:
    """thefuzz's ``fuzz.token_set_ratio(a, b)``."""
    rapidfuzz = require("rapidfuzz", "webshop")
    process = rapidfuzz.utils.default_process
    a, b = process(a.translate(_NON_ASCII)), process(b.translate(_NON_ASCII))
    return int(round(rapidfuzz.fuzz.token_set_ratio(a, b)))


@functools.cache
def _tagger():
    """spaCy's small English pipeline, or None where spaCy or the model is not installed."""
    try:
        import spacy

        return spacy.load(SPACY_MODEL)
    except (ImportError, OSError):
        return None


def title_nouns(title: str) -> list[str]:
    """The lower-cased nouns of a product title, repeats kept (WebShop counts them)."""
    tagger = _tagger()
    if tagger is not None:
        return [token.text.lower() for token in tagger(title) if token.pos_ in NOUN_TAGS]
    words = (word.lower() for word in _TITLE_WORD.findall(title))
    return [word for word in words if word not in _FUNCTION_WORDS]


def purchase_reward(
    bought: Product, options: dict[str, str], goal: Goal, goal_product: Product
) -> RewardBreakdown:
    """Score buying `bought` with the selected `options` ({type: value}) against `goal`."""
    texts = (bought.title.lower(), " ".join(bought.features).lower(), bought.description.lower())
    attributes_matched = sum(
        any(token_set_ratio(own, wanted) > FUZZY_THRESHOLD for own in bought.attributes)
        or any(wanted in text for text in texts)
        for wanted in goal.attributes
    )
    selected = [normalize_color(value) for value in options.values()]
    options_matched = sum(
        any(token_set_ratio(value, wanted) > FUZZY_THRESHOLD for value in selected)
        for wanted in _goal_option_texts(goal)
    )
    price_ok = bought.price <= goal.price_upper
    r_type = type_reward(bought, goal_product)
    total = (attributes_matched + options_matched + int(price_ok)) / (
        len(goal.attributes) + len(goal.options) + 1
    )
    return RewardBreakdown(r_type, attributes_matched, options_matched, price_ok, r_type * total)


def _goal_option_texts(goal: Goal) -> list[str]:
    if not goal.option_names:
        return [normalize_color(value) for value in goal.options]
    texts = []
    for pair in zip(goal.option_names, goal.options, strict=True):
        # WebShop calls normalize_color on the (name, value) tuple: `in` tests its elements.
        color = next((color for color in COLOR_SET if color in pair), None)
        texts.append(color if color is not None else str(pair))
    return texts


def type_reward(bought: Product, goal_product: Product) -> float:
    query_match = bought.query == goal_product.query
    path_bought = {part.strip() for part in bought.product_category.split("›")}
    path_goal = {part.strip() for part in goal_product.product_category.split("›")}
    category_match = len(path_bought & path_goal) >= 2
    wanted = title_nouns(goal_product.title)
    if wanted:
        title_score = len(set(title_nouns(bought.title)) & set(wanted)) / len(wanted)
    else:
        title_score = 0.2  # WebShop's score when the goal title has no noun
    if title_score == 0.0:
        return 0.0
    if title_score < 0.1:
        return 0.1
    return 1.0 if query_match or category_match or title_score > 0.2 else 0.5
