"""Speed measurement (``lorat benchmark``): LoRAT's network alone and the whole tracker step on this machine, at
several batch sizes, beside a yardstick (the bare timm ViT blocks of the same size in fp32) timed in the same run;
and how far a low-precision tracker's boxes are from the fp32 tracker's. See docs/speed.md."""
from .agreement import Agreement, compare_with_fp32
from .hardware import describe_hardware, hardware_info
from .measure import Row, SpeedReport, format_speed_report, measure_speed
from .timing import load_average, median_ratio, ratio_range, time_interleaved
from .yardstick import matmul_peak, network_flops, timm_blocks

__all__ = ["Agreement", "Row", "SpeedReport", "compare_with_fp32", "describe_hardware",
           "format_speed_report", "hardware_info", "load_average", "matmul_peak", "measure_speed", "median_ratio",
           "network_flops", "ratio_range", "time_interleaved", "timm_blocks"]
