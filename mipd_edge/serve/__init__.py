"""Serving a bundle over HTTP (``mipd-edge serve``): ``app`` (the routes), ``batching`` (the
queue), ``metrics`` (Prometheus), ``server`` (uvicorn, shutdown).

Deployment-side: it imports the Predictor and its runtimes, never training code or torch.
FastAPI, uvicorn and prometheus-client come with ``pip install 'mipd-edge[serve]'``.
"""

from .batching import BatchQueue, BatchSettings, QueueFull
from .server import read_admin_token, serve

__all__ = ["BatchQueue", "BatchSettings", "QueueFull", "read_admin_token", "serve"]
