"""The reviewer console: server-rendered pages for people, inside the Label Store process.

Lookup (every label on an entity, the decision on every surface of the live SDK
config as `Decision.explain()` gives it, the audit history), the review queue of
held labels, served under `/console/`. People log in (settings: `[console]`);
every action is a write through the store's own write path, audited as
`console:<person>`. docs/console.md shows the pages.
"""
