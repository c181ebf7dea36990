"""The studies built on the framework, one package each (its page: experiments/<study>/README.md).
A study may import any framework room; no framework room imports a study (docs/architecture.md).
Commands: `python -m memegap.studies.<study>.<command>`, or a console script (memegap-posts, memegap-search)."""
