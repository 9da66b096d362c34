"""PDS Workspace: a trusted research environment for SNDS-style national health data.

Importing this package has no side effects: no logging configuration, no globals mutated.
Entry points (the ``pds`` CLI, the hub configuration, the airlock service) configure logging.
"""

__version__ = "0.1.0"
