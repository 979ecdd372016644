"""iohwatch agent: the running service (Faust topology, per-bed pipeline, alerts, CLI).

Importing this package must stay cheap: no broker client, TensorRT or CUDA at import time.
"""

__version__ = "0.1.0"
