"""Test images built here, where none can be pulled: shared with the cluster's (infra/cluster/images.py)."""

from infra.cluster.images import CA_BUNDLE, debootstrap_image, docker_ready, exists, run

__all__ = ["CA_BUNDLE", "debootstrap_image", "docker_ready", "exists", "run"]
