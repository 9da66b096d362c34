"""The synthetic SNDS delivery, by part (see :mod:`pds_kernel.snds.generator`, its entry point)."""
