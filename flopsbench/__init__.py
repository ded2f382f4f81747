"""flopsbench: FLOPs, memory access, latency and FLOPS of neural-network operators and models."""

__version__ = "0.1.0"
