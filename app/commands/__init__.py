"""CLI verbs: one module per verb, each with register(subparsers) and run(args) -> int."""

VERBS = ("run", "bench", "models", "fleet", "sim", "doctor", "config")
