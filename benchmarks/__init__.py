"""Benchmarks of django-pg-real-pool: ``python -m benchmarks.micro``, ``.webload``, ``.workers``.

Each script prints its parameters and a Markdown table of figures and ratios,
and writes the raw numbers (JSON) and plots (PNG) into ``benchmarks/results/``.
They measure; they assert nothing. Load only ever goes to 127.0.0.1.
"""
