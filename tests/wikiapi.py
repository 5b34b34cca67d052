"""A fake MediaWiki Action API at ``/w/api.php`` of a test :class:`~tests.sites.Site`, for crawl tests.

It answers the three calls the Wikipedia collector makes, in MediaWiki's ``formatversion=2`` JSON:
``list=categorymembers`` (with ``cmcontinue`` pages of ``page_size`` members, and ``meta=siteinfo``),
``prop=info|revisions`` for up to 50 page ids (more is MediaWiki's ``toomanyvalues`` error), and
``action=parse`` of a revision (``nosuchrevid`` once the page is gone). Every call's parameters are kept
in :attr:`Wiki.calls`; :attr:`Wiki.faults` holds one-shot replies (a ``maxlag`` error, a 429) served to
the first call they match. The articles are short French texts the tests write.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from tests.sites import Hit, Reply, Site

API = "/w/api.php"
ROBOTS = "User-agent: *\nAllow: /w/api.php\nDisallow: /w/\n"
_JSON = {"Content-Type": "application/json; charset=utf-8"}


@dataclass
class Page:
    pageid: int
    title: str
    ns: int = 0
    revid: int = 1000
    timestamp: str = "2024-05-01T10:00:00Z"
    paragraphs: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)  # shown in the parse output (not the membership)
    redirect: bool = False
    gone: str = ""  # "info": deleted before the info request (listed, then missing); "parse": before the parse

    def html(self, revid: int) -> str:
        body = "".join(f"<p>{p}</p>" for p in self.paragraphs)
        return (f'<div class="mw-parser-output" lang="fr" dir="ltr"><div class="bandeau-portail">Portail de la '
                f'politique</div>{body}<h2 id="Notes_et_références">Notes et références</h2><ol class="references">'
                f'<li>Une référence.</li></ol></div><!-- Saved in parser cache with key frwiki:pcache:idhash:'
                f'{self.pageid}-0!canonical and timestamp 20240501100000 and revision id {revid}. -->')


def api_error(code: str, info: str, **headers: str) -> Reply:
    return Reply(200, json.dumps({"error": {"code": code, "info": info}, "servedby": "mw-test"}),
                 {**_JSON, "MediaWiki-API-Error": code, **headers})


class Wiki:
    """Categories (name without prefix -> member page ids, in order) and pages (page id -> :class:`Page`)."""

    def __init__(self, site: Site, *, page_size: int = 3, lang: str = "fr"):
        self.site, self.page_size, self.lang = site, page_size, lang
        self.pages: dict[int, Page] = {}
        self.members: dict[str, list[int]] = {}
        self.calls: list[dict[str, str]] = []
        self.faults: list[tuple[Callable[[dict[str, str]], bool], Reply]] = []
        self._next_id = 90000
        site.routes[API] = self.reply
        site.routes["/robots.txt"] = Reply(200, ROBOTS, {"Content-Type": "text/plain"})

    # -- building the wiki --

    def category(self, name: str, *members: int) -> int:
        """A category page and its members (article ids, or ids of category pages); returns its page id."""
        existing = next((p.pageid for p in self.pages.values() if p.ns == 14 and p.title.endswith(":" + name)), None)
        pageid = existing or self._new_id()
        self.pages[pageid] = Page(pageid, f"Catégorie:{name}", ns=14)
        self.members[name] = list(members)
        return pageid

    def article(self, pageid: int, title: str, paragraphs: list[str], revid: int | None = None) -> Page:
        page = Page(pageid, title, revid=revid or pageid * 10, paragraphs=paragraphs,
                    categories=["Politique_en_France"])
        self.pages[pageid] = page
        return page

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    # -- what the crawler asked --

    def kind(self, params: dict[str, str]) -> str:
        if params.get("action") == "parse":
            return "parse"
        return "list" if params.get("list") == "categorymembers" else "info"

    def calls_of(self, kind: str) -> list[dict[str, str]]:
        return [c for c in self.calls if self.kind(c) == kind]

    def parsed(self) -> list[int]:
        """Revision ids asked with action=parse, in order."""
        return [int(c["oldid"]) for c in self.calls_of("parse")]

    # -- the API --

    def reply(self, hit: Hit) -> Reply:
        params = dict(parse_qsl(urlsplit(hit.path).query))
        self.calls.append(params)
        for index, (matches, fault) in enumerate(self.faults):
            if matches(params):
                del self.faults[index]
                return fault
        if params.get("action") == "parse":
            return self._parse(params)
        if params.get("list") == "categorymembers":
            return self._members(params)
        return self._info(params)

    def _members(self, params: dict[str, str]) -> Reply:
        title = params["cmtitle"]
        prefix, _, name = title.partition(":")
        assert prefix in ("Category", "Catégorie"), title
        ids = self.members.get(name, [])
        start = int(params.get("cmcontinue", "0|0").split("|")[1])
        chunk = ids[start:start + self.page_size]
        answer: dict = {"batchcomplete": True, "query": {"categorymembers": [
            {"pageid": i, "ns": self.pages[i].ns, "title": self.pages[i].title} for i in chunk]}}
        if start + self.page_size < len(ids):
            answer["continue"] = {"cmcontinue": f"page|{start + self.page_size}", "continue": "-||"}
        if params.get("meta") == "siteinfo":
            answer["query"]["general"] = {"sitename": "Wikipédia", "lang": self.lang, "wikiid": f"{self.lang}wiki"}
        return Reply(200, json.dumps(answer, ensure_ascii=False), _JSON)

    def _info(self, params: dict[str, str]) -> Reply:
        ids = [int(i) for i in params["pageids"].split("|")]
        if len(ids) > 50:
            return api_error("toomanyvalues", "Too many values supplied for parameter \"pageids\". The limit is 50.")
        pages = []
        for pageid in ids:
            page = self.pages.get(pageid)
            if page is None or page.gone == "info":
                pages.append({"pageid": pageid, "missing": True})
                continue
            entry = {"pageid": pageid, "ns": page.ns, "title": page.title, "contentmodel": "wikitext",
                     "pagelanguage": self.lang, "touched": page.timestamp, "lastrevid": page.revid, "length": 999,
                     "fullurl": self.site.url(f"/wiki/{page.title.replace(' ', '_')}"),
                     "revisions": [{"revid": page.revid, "parentid": page.revid - 1, "timestamp": page.timestamp}]}
            if page.redirect:
                entry["redirect"] = True
            pages.append(entry)
        return Reply(200, json.dumps({"batchcomplete": True, "query": {"pages": pages}}, ensure_ascii=False), _JSON)

    def _parse(self, params: dict[str, str]) -> Reply:
        revid = int(params["oldid"])
        page = next((p for p in self.pages.values() if p.revid == revid), None)
        if page is None or page.gone:
            return api_error("nosuchrevid", f"There is no revision with ID {revid}.")
        parsed = {"title": page.title, "pageid": page.pageid, "revid": revid,
                  "text": page.html(revid),
                  "categories": [{"sortkey": "", "category": c, "hidden": False} for c in page.categories]
                  + [{"sortkey": "", "category": "Article_à_référence_nécessaire", "hidden": True}]}
        return Reply(200, json.dumps({"parse": parsed}, ensure_ascii=False), _JSON)
