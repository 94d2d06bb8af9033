"""The LoRAT network, its named variants, LoRA and weight files."""
from .build import build_model, count_parameters
from .config import VARIANTS, ModelConfig, get_config, list_variants
from .lora import LoRALinear
from .network import LoRAT
from .weights import WeightsError, read_weights, save_checkpoint

__all__ = ["ModelConfig", "VARIANTS", "get_config", "list_variants", "build_model", "count_parameters", "LoRAT",
           "LoRALinear", "WeightsError", "read_weights", "save_checkpoint"]
