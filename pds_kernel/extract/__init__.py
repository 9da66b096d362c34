"""Per-project extracts: cohort spec, linkage, pseudonymisation, conformity, publication.

Entry points: :func:`.spec.load_spec`, :func:`.build.run_build`, :func:`.build.run_check`.
"""
