"""Local search over subscribed catalogs: an inverted index with native and pure twins.

    from scp2p.search import Index
    index = Index()
    index.replace_share(share_id, manifest.items, title=..., description=..., weight=1.0, trust="normal")
    page = index.search('linux -debug ext:iso', limit=20)
    index.save(store); index = Index.load(store)

See docs/search.md (query language, ranking formula, early termination, persistence).
"""

from ._base import Hit, SearchPage
from .index import IMPLEMENTATION, Index, tokenize
from .query import Query, Term, parse_query


def __getattr__(name):  # Blocklist lives in scp2p.catalog, imported on first use (see _base._blocklist_of)
    if name == "Blocklist":
        from ..catalog.blocklist import Blocklist

        return Blocklist
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Index", "Hit", "SearchPage", "Blocklist", "Query", "Term", "parse_query", "tokenize", "IMPLEMENTATION"]
