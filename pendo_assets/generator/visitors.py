"""The visitors of an app: who sends events, from which browser and place."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from functools import cached_property

from pendo_assets.generator.ids import url_safe_token

ANONYMOUS_PREFIX = "_PENDO_T_"
ANONYMOUS_SHARE = 0.1

FIRST_NAMES = ("anna", "jürgen", "sofía", "haruto", "chloé", "ravi", "li", "oliver", "zoë", "mateus")
LAST_NAMES = ("müller", "garcía", "tanaka", "dubois", "sharma", "chen", "smith", "ødegaard", "silva")
ACCOUNTS = ("acme-industries", "müller-söhne", "globex", "initech", "umbrella", "東京商事", "stark-labs")
WEBKIT = "AppleWebKit/537.36 (KHTML, like Gecko)"
BROWSERS = (
    ("Chrome", f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {WEBKIT} Chrome/124.0 Safari/537.36"),
    ("Firefox", "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"),
    ("Safari", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Safari/605.1.15"),
    ("Edge", f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {WEBKIT} Chrome/124.0 Safari/537.36 Edg/124.0"),
)
PLACES = (
    ("US", "CA", "en-US", 37.7749, -122.4194),
    ("DE", "BY", "de-DE", 48.1351, 11.5820),
    ("JP", "13", "ja-JP", 35.6762, 139.6503),
    ("BR", "SP", "pt-BR", -23.5505, -46.6333),
    ("FR", "IDF", "fr-FR", 48.8566, 2.3522),
    ("IN", "KA", "en-IN", 12.9716, 77.5946),
)
AGENT_VERSIONS = ("2.251.1", "2.249.0", "2.244.3")


@dataclass(frozen=True)
class Visitor:
    visitor_id: str
    account_id: str | None
    user_agent: str
    browser: str
    language: str
    remote_ip: str
    country: str | None
    region: str | None
    latitude: float | None
    longitude: float | None
    agent_version: str
    session_prefix: str

    @property
    def is_anonymous(self) -> bool:
        return self.visitor_id.startswith(ANONYMOUS_PREFIX)

    @cached_property
    def client_fields(self) -> tuple[object, ...]:
        """userAgent, browser, language, remoteIp, country, region, latitude, longitude, version."""
        return (self.user_agent, self.browser, self.language, self.remote_ip, self.country, self.region,
                self.latitude, self.longitude, self.agent_version)


def anonymous_visitor_id(rng: random.Random) -> str:
    return ANONYMOUS_PREFIX + url_safe_token(rng, 11)


def build_visitors(rng: random.Random, count: int, case_twins: bool = False) -> tuple[Visitor, ...]:
    """With `case_twins`, two known visitors have ids that differ only in case, as Pendo allows."""
    visitors = [_visitor(rng, index) for index in range(count)]
    known = [index for index, visitor in enumerate(visitors) if not visitor.is_anonymous]
    if case_twins and len(known) >= 2:
        first, second = known[:2]
        visitors[second] = replace(visitors[second], visitor_id=visitors[first].visitor_id.upper())
    return tuple(visitors)


def _visitor(rng: random.Random, index: int) -> Visitor:
    anonymous = rng.random() < ANONYMOUS_SHARE
    browser, user_agent = rng.choice(BROWSERS)
    country, region, language, latitude, longitude = rng.choice(PLACES)
    located = rng.random() > 0.05
    return Visitor(
        visitor_id=anonymous_visitor_id(rng) if anonymous else _known_visitor_id(rng, index),
        account_id=None if anonymous else rng.choice(ACCOUNTS),
        user_agent=user_agent,
        browser=browser,
        language=language,
        remote_ip=_remote_ip(rng),
        country=country if located else None,
        region=region if located else None,
        latitude=latitude if located else None,
        longitude=longitude if located else None,
        agent_version=rng.choice(AGENT_VERSIONS),
        session_prefix=url_safe_token(rng, 10),
    )


def _known_visitor_id(rng: random.Random, index: int) -> str:
    return f"{rng.choice(FIRST_NAMES)}.{rng.choice(LAST_NAMES)}{index}@example.com"


def _remote_ip(rng: random.Random) -> str:
    if rng.random() < 0.25:
        return f"2001:db8:{rng.randrange(0x10000):x}::{rng.randrange(1, 0x10000):x}"
    return f"{rng.choice(('203.0.113', '198.51.100', '192.0.2'))}.{rng.randrange(1, 255)}"
