"""lth 0.1's name for the IMP experiment, kept for code written against it: everything here now lives in
lth.experiments."""

from lth.experiments import aggregate, find_tickets, format_table, run_imp

__all__ = ["aggregate", "find_tickets", "format_table", "run_imp"]
