"""JupyterHub integration: the local mode (sandbox spawner), the Kubernetes mode (KubeSpawner), and
what both share (projects as groups, roles from the registry, audit of logins and spawns)."""
