"""Local search over subscribed catalogs: an inverted index with native and pure twins.

    from scp2p.search import Index
    index = Index()
    index.replace_share(share_id, manifest.items, title=..., description=..., weight=1.0, trust="normal")
    page = index.search('linux -debug ext:iso', limit=20)
    index.save(store); index = Index.load(store)

See docs/search.md (query language, ranking formula, early termination, persistence).
"""

from ._base import Blocklist, Hit, SearchPage
from .index import IMPLEMENTATION, Index, tokenize
from .query import Query, Term, parse_query

__all__ = ["Index", "Hit", "SearchPage", "Blocklist", "Query", "Term", "parse_query", "tokenize", "IMPLEMENTATION"]
