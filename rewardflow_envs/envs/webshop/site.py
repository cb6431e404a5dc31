"""The shop's pages, what can be clicked on each, and what each click leads to.

Pages show what WebShop's text mode shows (its templates' visible strings), and clicks go where
WebShop's server sends them (`web_agent_site/envs/web_agent_text_env.py`).

A page is a small frozen value (kind, query, results page number, asin, selected options,
sub-page). It is the whole state of the site: with the task id in front it is the env's state
key, so two pages are one node exactly when every action leads to the same place from both
(selected options are not shown, but decide what "buy now" buys).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from rewardflow_envs.envs.webshop.buttons import (
    BACK_TO_SEARCH,
    BUY_NOW,
    DESCRIPTION,
    FEATURES,
    NEXT_PAGE,
    PREV_PAGE,
    SEARCH_BUTTON,
    SUB_PAGES,
)
from rewardflow_envs.envs.webshop.catalogue import Catalogue, Product, printable
from rewardflow_envs.envs.webshop.search import search_engine_for, words

SEARCH, RESULTS, ITEM, ITEM_SUB = "search", "results", "item", "item_sub"

SEARCH_ACTION = "search[<your query>]"

PRODUCTS_PER_PAGE = 10
MAX_QUERY_WORDS = 32


@dataclass(frozen=True)
class Page:
    kind: str
    query: str = ""
    number: int = 0
    asin: str = ""
    options: tuple[tuple[str, str], ...] = ()  # selected (type, value), sorted
    sub_page: str = ""

    @property
    def key(self) -> tuple:
        return (self.kind, self.query, self.number, self.asin, self.options, self.sub_page)


START_PAGE = Page(SEARCH)


def normalise_query(text: str) -> str:
    """The query as the site keeps it: lower-case words, single spaces, at most 32 words."""
    return " ".join(printable(" ".join(words(text)[:MAX_QUERY_WORDS])).split())


def normalise_click(text: str) -> str:
    return " ".join(text.lower().split())


def clean_text(text: str, limit: int) -> str:
    """`text` on one line, printable, cut to `limit` characters."""
    return clip(" ".join(printable(text).split()), limit)


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def visible(text: str) -> str:
    """A string as WebShop's text mode shows it: printable, stripped at both ends."""
    return printable(text).strip()


class Site:
    """Navigation over one catalogue: clickables, transitions and page text."""

    def __init__(self, catalogue: Catalogue):
        self.catalogue = catalogue
        # Built with the first site of a catalogue, so a missing bm25s fails at make time.
        self._search_engine = search_engine_for(catalogue)
        self._last_results: tuple[str, list[str]] | None = None

    def results(self, query: str) -> list[str]:
        """Search hits for a normalised query; the latest one is remembered."""
        if self._last_results is None or self._last_results[0] != query:
            self._last_results = (query, self._search_engine.search(query))
        return self._last_results[1]

    def page_asins(self, page: Page) -> list[str]:
        start = (page.number - 1) * PRODUCTS_PER_PAGE
        return self.results(page.query)[start : start + PRODUCTS_PER_PAGE]

    def option_types(self, product: Product) -> dict[str, str]:
        """Clickable option value -> its option type; a value under two types is the last's,
        as in WebShop, whose clickables map each value to the last radio button showing it."""
        return {
            normalise_click(value): name for name, values in product.options for value in values
        }

    def clickables(self, page: Page) -> list[str]:
        """What WebShop lists as clickable on `page`, in its order: buttons, product links,
        then option values."""
        if page.kind == SEARCH:
            return [SEARCH_BUTTON]
        if page.kind == RESULTS:
            previous = [PREV_PAGE] if page.number > 1 else []
            buttons = [BACK_TO_SEARCH, *previous, NEXT_PAGE]
            return list(dict.fromkeys(buttons + [a.lower() for a in self.page_asins(page)]))
        if page.kind == ITEM:
            product = self.catalogue.products[page.asin]
            buttons = [BACK_TO_SEARCH, PREV_PAGE, *SUB_PAGES, BUY_NOW]
            return list(dict.fromkeys(buttons + list(self.option_types(product))))
        return [BACK_TO_SEARCH, PREV_PAGE]

    def admissible_actions(self, page: Page) -> list[str]:
        """verl-agent's list: the search action where the page has a search box, then a click
        on every clickable."""
        search = [SEARCH_ACTION] if page.kind == SEARCH else []
        return search + [f"click[{target}]" for target in self.clickables(page)]

    def search(self, text: str) -> Page | None:
        """The results page for `text`, or None for a query with no words. WebShop's server
        runs a search from any page, not only from the one with the search box."""
        query = normalise_query(text)
        return Page(RESULTS, query=query, number=1) if query else None

    def click(self, page: Page, target: str) -> Page | None:
        """The page a click on `target` leads to, or None if nothing happens.

        "buy now" leads to no page: the caller ends the episode on it.
        """
        target = normalise_click(target)
        if target not in self.clickables(page) or target in (BUY_NOW, SEARCH_BUTTON):
            return None
        if target == BACK_TO_SEARCH:
            return START_PAGE
        if page.kind == RESULTS:
            if target == NEXT_PAGE:
                return replace(page, number=page.number + 1)
            if target == PREV_PAGE:
                return replace(page, number=page.number - 1)
            asin = next(asin for asin in self.page_asins(page) if asin.lower() == target)
            return replace(page, kind=ITEM, asin=asin)
        if page.kind == ITEM:
            if target == PREV_PAGE:
                return Page(RESULTS, query=page.query, number=page.number)
            # The server routes these names before looking at what was clicked, so a button
            # wins over an option value of the same text.
            if target in SUB_PAGES:
                return replace(page, kind=ITEM_SUB, sub_page=target)
            selected = dict(page.options)
            selected[self.option_types(self.catalogue.products[page.asin])[target]] = target
            return replace(page, options=tuple(sorted(selected.items())))
        return replace(page, kind=ITEM, sub_page="")  # item_sub: "< prev"

    def render(self, page: Page) -> str:
        """The page as WebShop's text mode shows it after the instruction (verl-agent's form):
        its visible strings, each quoted, joined by [SEP]."""
        if page.kind == SEARCH:
            parts = ["Search"]
        elif page.kind == RESULTS:
            parts = self._results_parts(page)
        elif page.kind == ITEM:
            parts = self._item_parts(page)
        else:
            parts = ["Back to Search", "< Prev", *self._sub_page_parts(page)]
        # An empty field renders no text at all; a blank one shows as an empty string.
        return " [SEP] ".join(f"'{visible(part)}'" for part in parts if part)

    def _results_parts(self, page: Page) -> list[str]:
        parts = [
            "Back to Search",
            f"Page {page.number} (Total results: {len(self.results(page.query))})",
        ]
        if page.number > 1:
            parts.append("< Prev")
        # WebShop shows "Next >" on every results page, past the last hit too.
        parts.append("Next >")
        for asin in self.page_asins(page):
            product = self.catalogue.products[asin]
            parts += [asin, product.title, product.price_text]
        return parts

    def _item_parts(self, page: Page) -> list[str]:
        product = self.catalogue.products[page.asin]
        parts = ["Back to Search", "< Prev"]
        for name, values in product.options:
            parts += [name, *values]
        return parts + [
            product.title,
            f"Price: {product.price_text}",
            "Rating: N.A.",
            "Description",
            "Features",
            "Reviews",
            "Buy Now",
        ]

    def _sub_page_parts(self, page: Page) -> list[str]:
        product = self.catalogue.products[page.asin]
        if page.sub_page == DESCRIPTION:
            return [product.description]
        if page.sub_page == FEATURES:
            # WebShop's template puts a space before each bullet, so an empty one still shows.
            return [f" {feature}" for feature in product.features]
        # WebShop's loader gives every product an empty review list.
        return []
