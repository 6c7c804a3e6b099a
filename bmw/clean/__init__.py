"""The clean stage: pypdf extraction, line-scoped boilerplate rules, paragraph reflow, language check.

`pdf` extracts page texts, `rules` names the boilerplate, `reflow` rebuilds paragraphs, `clean` ties them
into `clean_text`, `language` tells English from German, `documents` builds the stage's records.
"""
