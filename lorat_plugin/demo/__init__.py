"""The out-of-the-box demo (an application layer, like the CLI): the shipped demo model and classical baselines
over the procedural demo benchmark (:mod:`.procedural`, generated from real photographs), with reports, plots and
a rendered sequence; and the maintainers' steps that make the shipped model. See docs/demo.md."""
from .model import package_demo_model, write_initial_backbone
from .run import DEMO_TRACKER, DemoResult, run_demo
from .spec import demo_benchmark_spec, prepare_demo_benchmark

__all__ = ["DEMO_TRACKER", "DemoResult", "demo_benchmark_spec", "package_demo_model", "prepare_demo_benchmark",
           "run_demo", "write_initial_backbone"]
