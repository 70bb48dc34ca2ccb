"""Builders shared by the tests, one module per job (fixtures stay in tests/conftest.py): `config` (the tiny
training config), `project` (datasets and DVC project copies), `batches` (random model inputs), `models`
(tiny fusion models), `tracking` (what a run logged), `browser` (the chromium policy),
`bad_corpus` (broken input files), `request_strategies` (serving requests)."""
