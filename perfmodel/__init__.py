"""perfmodel: a Transformer LM, its attention kernels, and a tracker of how fast they run."""
from .attention import IMPLEMENTATIONS, attention, reference_attention
from .errors import UserError
from .measure import Result, resolve_device, run_cell
from .model import PRESETS, ModelConfig, TransformerLM, count_params, get_config
from .workloads import AttentionCell, ModelCell

__version__ = "0.1.0"
__all__ = ["IMPLEMENTATIONS", "PRESETS", "AttentionCell", "ModelCell", "ModelConfig", "Result",
           "TransformerLM", "UserError", "attention", "count_params", "get_config",
           "reference_attention", "resolve_device", "run_cell"]
