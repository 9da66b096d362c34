"""The Kubernetes path: pure translations of a :class:`~pds_kernel.sandbox.spec.WorkspaceSpec` into
pod pieces (:mod:`.pods`), the chart's runtime settings (:mod:`.config`) and the dask-gateway
cluster options (:mod:`.gateway`). Nothing here decides access: the registry does."""
