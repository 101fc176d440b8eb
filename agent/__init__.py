"""The node agent: reads GPUs (NVML or a simulator) and posts telemetry to the exchange.

Standalone on purpose: it runs on provider machines that have no Django, no database
and often no internet beyond the exchange's URL.
"""

__version__ = "0.1.0"
