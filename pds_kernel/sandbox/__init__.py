"""Isolated workspaces: the workspace spec (shared with Kubernetes), the bubblewrap argv builder,
the local sandbox spawner and its socket bridges."""
